//! The benchmark's side of the control socket: bench texts that carry their
//! send instant, pipelined SendDm calls, and streams of arrivals.

use super::*;

/// `TAG SEQ NANOS ` padded to 1 KB; NANOS is the send instant from `base()`.
pub(super) fn text(tag: &str, seq: u64) -> String {
    let nanos = base().elapsed().as_nanos();
    let mut t = format!("{tag} {seq} {nanos} ");
    t.extend(std::iter::repeat_n('x', TEXT_BYTES.saturating_sub(t.len())));
    t
}

/// Tag, sequence number and send instant of a bench text.
pub(super) fn parse_text(text: &str) -> Option<(&str, u64, Instant)> {
    let mut f = text.split(' ');
    let tag = f.next()?;
    let seq = f.next()?.parse().ok()?;
    let nanos: u64 = f.next()?.parse().ok()?;
    Some((tag, seq, base() + Duration::from_nanos(nanos)))
}

#[derive(Default)]
pub(super) struct SendStats {
    pub(super) ok: usize,
    pub(super) errors: usize,
    pub(super) first_error: Option<String>,
    pub(super) rtt_ms: Vec<f64>,
}

impl SendStats {
    pub(super) fn merge(&mut self, o: SendStats) {
        self.ok += o.ok;
        self.errors += o.errors;
        self.first_error = self.first_error.take().or(o.first_error);
        self.rtt_ms.extend(o.rtt_ms);
    }

    pub(super) fn note(&mut self, reply: &Reply, rtt: Duration) {
        self.rtt_ms.push(rtt.as_secs_f64() * 1e3);
        match &reply.error {
            None => self.ok += 1,
            Some(e) => {
                self.errors += 1;
                if self.first_error.is_none() {
                    self.first_error = Some(format!("{e} {}", reply.parameters_object()));
                }
            }
        }
    }
}

pub(super) fn send_call(to: &str, text: &str) -> Vec<u8> {
    let call = Call {
        method: api::SEND_DM.to_string(),
        parameters: Some(json!({ "to": to, "text": text })),
        oneway: false,
        more: false,
        upgrade: false,
    };
    serde_json::to_vec(&call).expect("encode a call")
}

/// Sends the texts `tag seq…` for `seqs` over one connection, keeping up to
/// `window` calls in flight (replies come back in order).
pub(super) async fn pump(socket: PathBuf, to: String, tag: String, seqs: Vec<u64>, window: usize) -> SendStats {
    let stream = UnixStream::connect(&socket).await.expect("connect to user1");
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut buf = Vec::new();
    let mut stats = SendStats::default();
    let mut inflight = std::collections::VecDeque::with_capacity(window);
    let mut next = seqs.into_iter();
    loop {
        while inflight.len() < window {
            let Some(seq) = next.next() else { break };
            let call = send_call(&to, &text(&tag, seq));
            write_frame(&mut write, &call).await.expect("send a call");
            inflight.push_back(Instant::now());
        }
        let Some(at) = inflight.pop_front() else { break };
        let got = read_frame(&mut read, &mut buf, DEFAULT_MAX_FRAME)
            .await
            .expect("read a reply");
        assert!(got, "user1 closed the control connection");
        let reply: Reply = serde_json::from_slice(&buf).expect("a Varlink reply");
        stats.note(&reply, at.elapsed());
    }
    stats
}

/// One SendDm every 1/LATENCY_RATE s, each waiting for its reply.
pub(super) async fn steady_sender(socket: PathBuf, to: &'static str, tag: &'static str, n: u64) -> SendStats {
    let mut client = Client::connect(&socket).await.expect("connect to user1");
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / LATENCY_RATE));
    let mut stats = SendStats::default();
    for seq in 0..n {
        tick.tick().await;
        let at = Instant::now();
        let r: Result<Value, _> = client
            .call(api::SEND_DM, &json!({ "to": to, "text": text(tag, seq) }))
            .await;
        let reply = match r {
            Ok(v) => Reply::ok(v),
            Err(e) => Reply::error("send failed", json!({ "error": e.to_string() })),
        };
        stats.note(&reply, at.elapsed());
    }
    stats
}

pub(super) async fn send_one(socket: &Path, to: &str, text: &str) -> String {
    let mut client = Client::connect(socket).await.expect("connect");
    let r: api::DmReply = client
        .call(
            api::SEND_DM,
            &api::SendDm {
                from: None,
                to: to.into(),
                text: text.into(),
            },
        )
        .await
        .expect("SendDm");
    r.message.id
}

/// Every message a streaming ListDms shows, with the instant it came.
pub(super) async fn watch(socket: &Path, params: Value) -> mpsc::UnboundedReceiver<(Instant, Dm)> {
    let mut client = Client::connect(socket).await.expect("connect");
    client.call_more(api::LIST_DMS, &params).await.expect("ListDms more");
    let (first, _): (DmList, bool) = client.next().await.expect("first ListDms reply");
    let (tx, rx) = mpsc::unbounded_channel();
    for m in first.messages {
        let _ = tx.send((Instant::now(), m));
    }
    tokio::spawn(async move {
        // Ends when the node stops or the receiver is dropped.
        while let Ok((list, _)) = client.next::<DmList>().await {
            let now = Instant::now();
            for m in list.messages {
                if tx.send((now, m)).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

pub(super) fn drain(rx: &mut mpsc::UnboundedReceiver<(Instant, Dm)>) {
    while rx.try_recv().is_ok() {}
}

pub(super) async fn next_arrival(
    rx: &mut mpsc::UnboundedReceiver<(Instant, Dm)>,
    tag: &str,
    within: Duration,
) -> Option<Dm> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let (_, m) = tokio::time::timeout_at(deadline, rx.recv()).await.ok()??;
        if m.direction == "in" && parse_text(&m.text).is_some_and(|(t, _, _)| t == tag) {
            return Some(m);
        }
    }
}

#[derive(Default)]
pub(super) struct Arrivals {
    pub(super) count: usize,
    pub(super) last_at: Option<Instant>,
    pub(super) latency_ms: Vec<f64>,
}

/// Distinct incoming messages tagged `tag` until `n` came or none for `stall`.
pub(super) async fn collect(
    rx: &mut mpsc::UnboundedReceiver<(Instant, Dm)>,
    tag: &str,
    n: usize,
    stall: Duration,
) -> Arrivals {
    collect_where(rx, tag, n, stall, |m| m.direction == "in").await
}

/// Distinct outgoing messages tagged `tag` seen in `state`.
pub(super) async fn collect_state(
    rx: &mut mpsc::UnboundedReceiver<(Instant, Dm)>,
    tag: &str,
    state: &str,
    n: usize,
    stall: Duration,
) -> Arrivals {
    collect_where(rx, tag, n, stall, |m| m.direction == "out" && m.state == state).await
}

pub(super) async fn collect_where(
    rx: &mut mpsc::UnboundedReceiver<(Instant, Dm)>,
    tag: &str,
    n: usize,
    stall: Duration,
    pick: impl Fn(&Dm) -> bool,
) -> Arrivals {
    let mut seen = HashSet::new();
    let mut out = Arrivals::default();
    while out.count < n {
        let Ok(Some((at, m))) = tokio::time::timeout(stall, rx.recv()).await else {
            break;
        };
        let Some((t, seq, sent)) = parse_text(&m.text) else {
            continue;
        };
        if t != tag || !pick(&m) || !seen.insert(seq) {
            continue;
        }
        out.count += 1;
        out.last_at = Some(at);
        out.latency_ms
            .push(at.saturating_duration_since(sent).as_secs_f64() * 1e3);
    }
    out
}
