//! What every problem document (RFC 9457) shares, whoever renders it: the
//! `title` of a status and the `type` URI of a code. A problem's title
//! depends on its status only, never on which path produced it.

/// The base of every problem `type` URI; the code follows, `_` written `-`.
pub const PROBLEM_TYPE_BASE: &str = "https://flowgate.dev/problems/";

/// The `type` URI of a problem code (`validation_failed` →
/// `https://flowgate.dev/problems/validation-failed`).
pub fn problem_type(code: &str) -> String {
    format!("{PROBLEM_TYPE_BASE}{}", code.replace('_', "-"))
}

/// The `title` of a problem with this status: the reason phrase of RFC 9110
/// (422 is "Unprocessable Content", 413 "Content Too Large"); "Error" for a
/// status without one.
pub fn title_of(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        423 => "Locked",
        424 => "Failed Dependency",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        507 => "Insufficient Storage",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_follow_rfc_9110() {
        assert_eq!(title_of(422), "Unprocessable Content");
        assert_eq!(title_of(413), "Content Too Large");
        assert_eq!(title_of(404), "Not Found");
        assert_eq!(title_of(499), "Error");
    }

    #[test]
    fn type_uri_names_the_code() {
        assert_eq!(
            problem_type("validation_failed"),
            "https://flowgate.dev/problems/validation-failed"
        );
    }
}
