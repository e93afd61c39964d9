//! Secret redaction: every encoding of a secret value the server itself produces
//! (raw, JSON-escaped, Rust/Rhai debug-quoted, percent-encoded, base64) is replaced
//! by `[redacted]` in logs, errors and records.

use base64::Engine as _;

/// What replaces a secret.
pub const REDACTED: &str = "[redacted]";

/// Shortest secret whose encoded forms (other than the raw value) are redacted;
/// shorter ones would match too much unrelated text.
const MIN_ENCODED: usize = 4;
/// Shortest base64 fragment searched for inside longer base64 text.
const MIN_B64_FRAGMENT: usize = 8;

fn unquote(s: String) -> String {
    s.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .map(str::to_owned)
        .unwrap_or(s)
}

fn json_escaped(s: &str) -> String {
    unquote(serde_json::to_string(s).unwrap_or_default())
}

fn debug_escaped(s: &str) -> String {
    unquote(format!("{s:?}"))
}

fn percent_encoded(s: &str, lower: bool) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else if lower {
            out.push_str(&format!("%{b:02x}"));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The base64 text that encodes `secret` wherever it sits in a longer encoded
/// input: for each of the three alignments, the characters determined by the
/// secret's bytes alone.
fn base64_fragments(secret: &[u8], out: &mut Vec<String>) {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    for engine in [&STANDARD, &URL_SAFE] {
        out.push(engine.encode(secret));
    }
    for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
        out.push(engine.encode(secret));
        for k in 0..3usize {
            let mut buf = vec![0u8; k];
            buf.extend_from_slice(secret);
            let enc = engine.encode(&buf);
            let first = k.div_ceil(3) * 4;
            let last = (buf.len() / 3) * 4;
            if last > first && last - first >= MIN_B64_FRAGMENT {
                if let Some(frag) = enc.get(first..last) {
                    out.push(frag.to_owned());
                }
            }
        }
    }
}

/// Every form of `secret` to redact, longest first (so a longer encoding is
/// replaced before a shorter one inside it).
pub fn secret_forms(secret: &str) -> Vec<String> {
    let mut forms = vec![secret.to_owned()];
    if secret.len() >= MIN_ENCODED {
        let json = json_escaped(secret);
        let debug = debug_escaped(secret);
        forms.push(json_escaped(&json));
        forms.push(debug_escaped(&debug));
        forms.push(json);
        forms.push(debug);
        forms.push(percent_encoded(secret, false));
        forms.push(percent_encoded(secret, true));
        forms.push(url::form_urlencoded::byte_serialize(secret.as_bytes()).collect());
        // as the URL parser encodes it in a path, a query and a fragment
        if let Ok(mut u) = url::Url::parse("http://h/") {
            u.set_path(secret);
            forms.push(u.path().trim_start_matches('/').to_owned());
            u.set_query(Some(secret));
            forms.push(u.query().unwrap_or_default().to_owned());
            u.set_fragment(Some(secret));
            forms.push(u.fragment().unwrap_or_default().to_owned());
        }
        base64_fragments(secret.as_bytes(), &mut forms);
    }
    forms.retain(|f| !f.is_empty());
    forms.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    forms.dedup();
    forms
}

/// Replaces every form in `forms` with `[redacted]`.
pub fn redact_with(text: &str, forms: &[String]) -> String {
    let mut out: Option<String> = None;
    for f in forms {
        let cur = out.as_deref().unwrap_or(text);
        if cur.contains(f.as_str()) {
            out = Some(cur.replace(f.as_str(), REDACTED));
        }
    }
    out.unwrap_or_else(|| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;

    const S: &str = "p@ss \"w0rd\"/+é\u{1}";

    fn redacts(text: &str) {
        let out = redact_with(text, &secret_forms(S));
        assert!(out.contains(REDACTED), "{text} -> {out}");
        assert!(!out.contains("w0rd"), "{out} (from {text})");
    }

    #[test]
    fn every_encoding_the_server_produces_is_redacted() {
        redacts(&format!("raw {S} end"));
        redacts(&serde_json::json!({ "password": S }).to_string());
        let nested = serde_json::json!({ "msg": serde_json::json!({ "p": S }).to_string() });
        redacts(&nested.to_string());
        redacts(&format!("{S:?}"));
        redacts(&format!("{:?}", format!("{S:?}")));
        redacts(&format!(
            "https://x.example/?q={}",
            url::form_urlencoded::byte_serialize(S.as_bytes()).collect::<String>()
        ));
        redacts(&format!("/v1/{}", percent_encoded(S, false)));
        let mut u = url::Url::parse("https://x.example/").unwrap();
        u.set_path(&format!("/v1/{S}/z"));
        u.set_query(Some(&format!("a={S}")));
        redacts(u.as_str());
        redacts(&STANDARD.encode(S));
        // embedded at every alignment, e.g. Basic auth
        for prefix in ["", "u:", "us:", "use:"] {
            redacts(&STANDARD.encode(format!("{prefix}{S}")));
            redacts(&STANDARD.encode(format!("{prefix}{S}tail")));
        }
    }

    #[test]
    fn short_secrets_redact_only_their_raw_form() {
        assert_eq!(secret_forms("ab"), ["ab"]);
        assert_eq!(redact_with("xaby", &secret_forms("ab")), "x[redacted]y");
    }
}
