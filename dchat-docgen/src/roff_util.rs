//! Small helpers over the `roff` crate that clap_mangen re-exports, for the
//! hand-written parts of the pages (everything clap does not know: files,
//! signals, exit codes, the config keys), and the final tidying that keeps
//! `mandoc -Tlint -W style` quiet.

use clap::{Arg, ArgAction};
use clap_mangen::roff::{bold, italic, roman, Inline, Roff};
use clap_mangen::Man;

/// The string-register preamble `roff` writes before every rendered chunk.
/// A page needs it once, at the top.
const PREAMBLE: &str = ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n";

/// Longest text line we write; mandoc's style check asks for at most 80.
const WIDTH: usize = 78;

/// Glues rendered chunks into one page, keeping only the first preamble.
#[derive(Default)]
pub struct Page {
    text: String,
}

impl Page {
    fn push(&mut self, chunk: String) {
        if self.text.is_empty() {
            self.text = chunk;
        } else {
            self.text.push_str(chunk.strip_prefix(PREAMBLE).unwrap_or(&chunk));
        }
    }

    pub fn push_doc(&mut self, doc: Doc) {
        self.push(doc.roff.render());
    }

    /// Adds clap_mangen's rendering of one part of a page.
    pub fn push_man(&mut self, man: &Man, part: fn(&Man, &mut dyn std::io::Write) -> std::io::Result<()>) {
        let mut buf = Vec::new();
        // Writing into a Vec cannot fail, and clap_mangen writes UTF-8 only.
        if part(man, &mut buf).is_ok() {
            self.push(String::from_utf8_lossy(&buf).into_owned());
        }
    }

    /// The page, with long text lines wrapped.
    pub fn finish(self) -> String {
        wrap_text_lines(&self.text)
    }
}

/// Builds the hand-written parts of a page. Remembers whether a heading was
/// just written, because a paragraph macro right after one is redundant
/// (and mandoc says so).
pub struct Doc {
    roff: Roff,
    after_heading: bool,
}

impl Doc {
    pub fn new() -> Self {
        Doc {
            roff: Roff::default(),
            after_heading: false,
        }
    }

    /// A raw control line, such as `.TH`.
    pub fn control(&mut self, name: &str, args: &[&str]) {
        self.roff.control(name, args.iter().copied());
        self.after_heading = false;
    }

    pub fn section(&mut self, name: &str) {
        self.roff.control("SH", [name]);
        self.after_heading = true;
    }

    pub fn subsection(&mut self, name: &str) {
        self.roff.control("SS", [name]);
        self.after_heading = true;
    }

    /// Starts a paragraph, unless one starts anyway after a heading.
    fn paragraph_break(&mut self) {
        if !self.after_heading {
            self.roff.control("PP", []);
        }
        self.after_heading = false;
    }

    /// A paragraph of plain text.
    pub fn para(&mut self, text: &str) {
        self.para_inline(vec![roman(text)]);
    }

    /// A paragraph of mixed fonts.
    pub fn para_inline(&mut self, inlines: Vec<Inline>) {
        self.paragraph_break();
        self.roff.text(inlines);
    }

    /// A line break inside a paragraph, then more text.
    pub fn line_after_break(&mut self, inlines: Vec<Inline>) {
        self.roff.control("br", []);
        self.roff.text(inlines);
    }

    /// A tagged paragraph: `tag` on its own line, `body` indented below it.
    pub fn tagged(&mut self, tag: Vec<Inline>, body: &str) {
        self.roff.control("TP", []);
        self.roff.text(tag);
        self.roff.text([roman(body)]);
        self.after_heading = false;
    }

    /// A tagged paragraph whose tag is set in bold.
    pub fn tagged_bold(&mut self, tag: &str, body: &str) {
        self.tagged(vec![bold(tag)], body);
    }

    /// A literal block (commands, file excerpts), shown as is.
    pub fn example(&mut self, lines: &[&str]) {
        self.paragraph_break();
        self.roff.control("EX", []);
        for line in lines {
            self.roff.text([roman(*line)]);
        }
        self.roff.control("EE", []);
    }

    /// The SEE ALSO section: `name(section)` references, comma-separated.
    pub fn see_also(&mut self, pages: &[(&str, &str)]) {
        self.section("SEE ALSO");
        let mut line = Vec::new();
        for (i, (name, sect)) in pages.iter().enumerate() {
            line.push(bold(*name));
            let sep = if i + 1 < pages.len() { "), " } else { ")" };
            line.push(roman(format!("({sect}{sep}")));
        }
        self.para_inline(line);
    }
}

/// `-o, --output FILE` or `--burner`: how a flag is written in a synopsis
/// or as the tag of its description.
pub fn flag_words(arg: &Arg, with_short: bool) -> Vec<Inline> {
    let mut words = Vec::new();
    if let (true, Some(short)) = (with_short, arg.get_short()) {
        words.push(bold(format!("-{short}")));
        if arg.get_long().is_some() {
            words.push(roman(", "));
        }
    }
    if let Some(long) = arg.get_long() {
        words.push(bold(format!("--{long}")));
    } else if let (false, Some(short)) = (with_short, arg.get_short()) {
        words.push(bold(format!("-{short}")));
    }
    if takes_value(arg) {
        words.push(roman(" "));
        words.push(italic(value_name(arg)));
    }
    words
}

/// `[--flag VALUE]`, or without brackets when the flag is required.
pub fn synopsis_flag(arg: &Arg) -> Vec<Inline> {
    let mut words = vec![roman(if arg.is_required_set() { " " } else { " [" })];
    words.extend(flag_words(arg, false));
    if !arg.is_required_set() {
        words.push(roman("]"));
    }
    words
}

pub fn takes_value(arg: &Arg) -> bool {
    arg.get_num_args().is_some_and(|n| n.takes_values())
        && matches!(arg.get_action(), ArgAction::Set | ArgAction::Append)
}

pub fn value_name(arg: &Arg) -> String {
    arg.get_value_names()
        .map(|names| names.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| arg.get_id().as_str().to_uppercase())
}

/// Whether `arg` is clap's automatic --help or --version.
pub fn is_automatic(arg: &Arg) -> bool {
    matches!(
        arg.get_action(),
        ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
    )
}

/// Breaks text lines longer than [`WIDTH`] at spaces. In filled text a line
/// break is just a space, and font escapes such as `\fB` stay in force
/// across lines, so this changes nothing in the output. Control lines and
/// literal (`.EX`) blocks are left alone, and a continuation line that
/// would start with a control character is protected with `\&`.
fn wrap_text_lines(page: &str) -> String {
    let mut out = String::with_capacity(page.len() + page.len() / 16);
    let mut literal = false;
    for line in page.lines() {
        if line.starts_with(".EX") {
            literal = true;
        } else if line.starts_with(".EE") {
            literal = false;
        }
        if literal || line.starts_with('.') || line.starts_with('\'') || line.len() <= WIDTH {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let mut current = String::new();
        for word in line.split(' ') {
            if !current.is_empty() && current.len() + 1 + word.len() > WIDTH {
                out.push_str(&current);
                out.push('\n');
                current.clear();
            }
            if current.is_empty() {
                if word.starts_with('.') || word.starts_with('\'') {
                    current.push_str("\\&");
                }
            } else {
                current.push(' ');
            }
            current.push_str(word);
        }
        out.push_str(&current);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::wrap_text_lines;

    #[test]
    fn wraps_only_long_text_lines() {
        let long = "word ".repeat(30);
        let page = format!(".SH NAME\n{long}\n.EX\n{long}\n.EE\n");
        let wrapped = wrap_text_lines(&page);
        let lines: Vec<&str> = wrapped.lines().collect();
        assert_eq!(lines[0], ".SH NAME");
        assert!(lines[1].len() <= 78 && lines[2].len() <= 78);
        // The literal block keeps its one long line.
        assert!(wrapped.contains(&format!(".EX\n{long}\n.EE")));
        // No words lost.
        assert_eq!(wrapped.split_whitespace().filter(|w| *w == "word").count(), 60);
    }

    #[test]
    fn protects_continuations_that_look_like_requests() {
        let line = format!("{} .hidden", "x".repeat(77));
        assert_eq!(wrap_text_lines(&line), format!("{}\n\\&.hidden\n", "x".repeat(77)));
    }
}
