//! What both message targets assert: a parsed line re-serializes to one
//! that parses the same, and an unreadable one gets a short error that can
//! be sent back.

use std::fmt::Debug;

use hashsplit_stratum::{Id, Incoming, Message, Method, ParseError};

/// Longest error text a line may produce: errors quote the input in short
/// excerpts, so a hostile line cannot flood the logs or the reply.
const MAX_ERROR_TEXT: usize = 1024;

/// Parses `data` as one line as side `M` reads it and checks the result.
pub(crate) fn check_line<M: Method + PartialEq + Debug>(data: &[u8], extra: impl Fn(&Incoming<M>)) {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    match Incoming::<M>::from_line(line) {
        Ok(incoming) => {
            let written = match &incoming {
                Incoming::Call { id, method } => method.to_line(id.clone()),
                Incoming::Response(response) => response.to_line(),
            };
            assert!(
                !written.contains('\n'),
                "a written line holds a newline: {written}"
            );
            let again = Incoming::<M>::from_line(&written).unwrap_or_else(|e| {
                panic!("{written:?} (written from {line:?}) does not parse: {e}")
            });
            assert_eq!(again, incoming, "{line:?} came back as {written:?}");
            extra(&incoming);
        }
        Err(error) => check_error(&error),
    }
}

fn check_error(error: &ParseError) {
    let text = error.to_string();
    assert!(
        text.len() <= MAX_ERROR_TEXT,
        "an error of {} bytes: {text:.200}",
        text.len()
    );
    if let Some(response) = error.to_response() {
        let written = response.to_line();
        match Message::from_line(&written) {
            Ok(Message::Response(back)) => {
                assert_eq!(back, response, "error reply {written:?}");
                assert_ne!(back.id, Id::Null, "to_response gives only answerable ids");
            }
            other => panic!("error reply {written:?} reads as {other:?}"),
        }
    }
}
