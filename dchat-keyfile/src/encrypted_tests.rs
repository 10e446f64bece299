//! Tests for the encrypted identity file. Kept beside `encrypted.rs` so that
//! file stays about the format; they use the tiny `KdfParams::TEST` costs.

use super::*;
use serde_json::{json, Value};

const PASSWORD: &[u8] = b"correct horse battery staple";

fn sample(name: Option<&str>, burner: bool) -> IdentityFile {
    IdentityFile {
        name: name.map(str::to_owned),
        burner,
        identity: Identity::generate().unwrap(),
    }
}

fn encrypted(file: &IdentityFile) -> Vec<u8> {
    encrypt(file, PASSWORD, &KdfParams::TEST).unwrap()
}

/// Applies `edit` to the parsed document and serializes it again.
fn edited(bytes: &[u8], edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut doc: Value = serde_json::from_slice(bytes).unwrap();
    edit(&mut doc);
    serde_json::to_vec(&doc).unwrap()
}

/// Flips the first bit of a base64 field, keeping its length.
fn flip_b64(v: &mut Value) {
    let mut bytes = B64.decode(v.as_str().unwrap()).unwrap();
    bytes[0] ^= 1;
    *v = Value::String(B64.encode(bytes));
}

#[test]
fn round_trip() {
    for file in [sample(Some("alice"), false), sample(None, true)] {
        let back = decrypt(&encrypted(&file), PASSWORD).unwrap();
        assert_eq!(back.name, file.name);
        assert_eq!(back.burner, file.burner);
        assert_eq!(back.identity.id(), file.identity.id());
        assert_eq!(*back.identity.identity_secret(), *file.identity.identity_secret());
        assert_eq!(*back.identity.messaging_secret(), *file.identity.messaging_secret());
    }
}

#[test]
fn layout_has_clear_header_and_no_secrets() {
    let file = sample(Some("alice"), true);
    let bytes = encrypted(&file);
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(text.contains("\n  \"format\""), "pretty printed");
    let doc: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(doc["format"], "dchat-identity/1");
    assert_eq!(doc["id"], file.identity.id());
    assert_eq!(doc["name"], "alice");
    assert_eq!(doc["burner"], true);
    assert_eq!(doc["kdf"]["alg"], "argon2id");
    assert_eq!(doc["kdf"]["m_cost_kib"], 8);
    assert_eq!(doc["cipher"], "xchacha20poly1305");
    assert_eq!(B64.decode(doc["nonce"].as_str().unwrap()).unwrap().len(), 24);
    assert!(!text.contains(&hex::encode(*file.identity.identity_secret())));
    assert!(!text.contains(&B64.encode(*file.identity.identity_secret())));
}

#[test]
fn default_params_are_argon2id_64mib() {
    assert_eq!(
        KdfParams::DEFAULT,
        KdfParams {
            m_cost_kib: 65536,
            t_cost: 3,
            p_cost: 1
        }
    );
    assert!(KdfParams::DEFAULT.check().is_ok());
    assert!(KdfParams::TEST.check().is_ok());
}

#[test]
fn wrong_password() {
    let bytes = encrypted(&sample(None, false));
    assert!(matches!(decrypt(&bytes, b"incorrect"), Err(KeyError::WrongPassword)));
}

#[test]
fn empty_password_refused() {
    let file = sample(None, false);
    assert!(matches!(
        encrypt(&file, b"", &KdfParams::TEST),
        Err(KeyError::EmptyPassword)
    ));
    assert!(matches!(decrypt(&encrypted(&file), b""), Err(KeyError::EmptyPassword)));
}

type Edit = Box<dyn Fn(&mut Value)>;

#[test]
fn each_tampered_header_field_fails() {
    // 32 KiB so that p_cost 2 is still a valid argon2 setting and the edit
    // reaches the AEAD check instead of the parameter check.
    let params = KdfParams {
        m_cost_kib: 32,
        ..KdfParams::TEST
    };
    let bytes = encrypt(&sample(Some("alice"), false), PASSWORD, &params).unwrap();
    let other_id = Identity::generate().unwrap().id();
    let edits: Vec<(&str, Edit)> = vec![
        ("format", Box::new(|d| d["format"] = json!("dchat-identity/2"))),
        ("id", Box::new(move |d| d["id"] = json!(other_id))),
        ("name", Box::new(|d| d["name"] = json!("mallory"))),
        ("name removed", Box::new(|d| d["name"] = Value::Null)),
        ("burner", Box::new(|d| d["burner"] = json!(true))),
        ("kdf.alg", Box::new(|d| d["kdf"]["alg"] = json!("argon2i"))),
        ("kdf.m_cost_kib", Box::new(|d| d["kdf"]["m_cost_kib"] = json!(16))),
        ("kdf.t_cost", Box::new(|d| d["kdf"]["t_cost"] = json!(2))),
        ("kdf.p_cost", Box::new(|d| d["kdf"]["p_cost"] = json!(2))),
        ("kdf.salt", Box::new(|d| flip_b64(&mut d["kdf"]["salt"]))),
        ("cipher", Box::new(|d| d["cipher"] = json!("chacha20poly1305"))),
        ("nonce", Box::new(|d| flip_b64(&mut d["nonce"]))),
        ("ciphertext", Box::new(|d| flip_b64(&mut d["ciphertext"]))),
        ("extra field", Box::new(|d| d["note"] = json!("unauthenticated"))),
    ];
    for (what, edit) in edits {
        let bad = edited(&bytes, edit);
        let got = decrypt(&bad, PASSWORD);
        // Fields with a fixed value are caught by name; the rest only by the
        // authentication tag, which is what this test is about.
        let fixed = ["format", "kdf.alg", "cipher", "extra field"].contains(&what);
        match got {
            Err(KeyError::WrongPassword) => assert!(!fixed, "{what}"),
            Err(KeyError::UnsupportedFormat(_) | KeyError::Malformed(_)) if fixed => {}
            other => panic!("tampered {what}: {other:?}"),
        }
    }
    // Sanity: an edit that changes nothing still decrypts.
    assert!(decrypt(&edited(&bytes, |_| {}), PASSWORD).is_ok());
}

#[test]
fn newer_format_is_unsupported() {
    let bytes = edited(&encrypted(&sample(None, false)), |d| {
        d["format"] = json!("dchat-identity/9")
    });
    assert!(matches!(decrypt(&bytes, PASSWORD), Err(KeyError::UnsupportedFormat(_))));
}

#[test]
fn truncated_garbage_and_non_json_are_malformed() {
    let bytes = encrypted(&sample(None, false));
    let short_ct = edited(&bytes, |d| {
        let ct = B64.decode(d["ciphertext"].as_str().unwrap()).unwrap();
        d["ciphertext"] = json!(B64.encode(&ct[..40]));
    });
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", bytes[..bytes.len() / 2].to_vec()),
        ("empty", Vec::new()),
        ("garbage", vec![0xff, 0x00, 0x13, 0x37]),
        ("not json", b"-----BEGIN PRIVATE KEY-----".to_vec()),
        ("wrong json", b"[1, 2, 3]".to_vec()),
        ("missing fields", br#"{"format":"dchat-identity/1"}"#.to_vec()),
        ("short ciphertext", short_ct),
        ("bad base64", edited(&bytes, |d| d["nonce"] = json!("!!!"))),
        ("bad id", edited(&bytes, |d| d["id"] = json!("../../etc/passwd"))),
    ];
    for (what, bad) in cases {
        let got = decrypt(&bad, PASSWORD);
        assert!(matches!(got, Err(KeyError::Malformed(_))), "{what}: {got:?}");
    }
}

#[test]
fn hostile_kdf_params_are_refused_before_hashing() {
    let bytes = encrypted(&sample(None, false));
    // Each of these would take gigabytes or minutes if run; the test finishing
    // quickly is part of the check.
    let edits: [(&str, u32); 3] = [("m_cost_kib", 4 * 1024 * 1024), ("t_cost", 1000), ("p_cost", 64)];
    for (field, value) in edits {
        let bad = edited(&bytes, |d| d["kdf"][field] = json!(value));
        let got = decrypt(&bad, PASSWORD);
        assert!(matches!(got, Err(KeyError::Malformed(_))), "{field}: {got:?}");
    }
    let too_big = KdfParams {
        m_cost_kib: 2 * 1024 * 1024,
        ..KdfParams::TEST
    };
    let got = encrypt(&sample(None, false), PASSWORD, &too_big);
    assert!(matches!(got, Err(KeyError::InvalidKdfParams(_))));
}

#[test]
fn id_that_does_not_match_the_key_is_malformed() {
    let file = sample(None, false);
    let liar = Identity::generate().unwrap().id();
    let bytes = seal(&liar, &file, PASSWORD, &KdfParams::TEST).unwrap();
    let got = decrypt(&bytes, PASSWORD);
    assert!(matches!(got, Err(KeyError::Malformed(_))), "{got:?}");
}

/// About 8 s in a debug build (64 MiB, 3 passes, twice); run with `--ignored`.
#[test]
#[ignore = "slow in debug builds"]
fn default_params_round_trip() {
    let file = sample(None, false);
    let bytes = encrypt(&file, PASSWORD, &KdfParams::DEFAULT).unwrap();
    let back = decrypt(&bytes, PASSWORD).unwrap();
    assert_eq!(back.identity.id(), file.identity.id());
}
