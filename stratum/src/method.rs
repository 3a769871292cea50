//! Typed Stratum v1 methods, read from the envelope once at the edge.
//!
//! [`ClientMethod`] is what a miner sends (and what the proxy sends a pool);
//! [`ServerMethod`] is what a pool sends (and what the proxy sends a miner).
//! The names follow the JSON-RPC roles, not the `client.` prefix of some
//! server methods (`client.reconnect` is a [`ServerMethod`]).
//! Both sides of every method are here: the proxy and the simulators play
//! each role, so everything parses and serialises. Typed results
//! ([`SubscribeResult`], [`ConfigureResult`], [`SubmitResult`]) are read from a
//! [`Response`] once the caller knows which request it answers.
//!
//! [`Incoming::from_line`] is the one-call entry point for a session or an
//! upstream: a line becomes a typed call or a response, or a [`ParseError`]
//! that still carries the id and method when they could be read.

mod client;
mod fields;
mod results;
mod server;

pub use client::{ClientMethod, Configure, Submit, VersionRolling};
pub use results::{ConfigureResult, SubmitResult, SubscribeResult};
pub use server::{Notify, ServerMethod};

use serde_json::Value;

use crate::error::{ParseError, ParseErrorKind};
use crate::message::{Id, Message, Notification, Request, Response};

/// A typed set of methods: how to read one from a call and write it back.
pub trait Method: Sized {
    /// Returns the wire name, e.g. `"mining.submit"`.
    fn name(&self) -> &'static str;

    /// Reads the method called `method` from its positional params.
    fn from_call(method: &str, params: &[Value]) -> Result<Self, ParseErrorKind>;

    /// Returns the positional params in their customary wire form.
    fn to_params(&self) -> Vec<Value>;

    /// Returns the envelope for this call: a [`Request`] carrying `id`.
    fn to_request(&self, id: Id) -> Request {
        Request {
            id,
            method: self.name().to_owned(),
            params: self.to_params(),
        }
    }

    /// Returns the envelope for this call as a [`Notification`].
    fn to_notification(&self) -> Notification {
        Notification {
            method: self.name().to_owned(),
            params: self.to_params(),
        }
    }

    /// Returns the line for this call with `id` (`Id::Null` for a
    /// notification), without `\n`.
    fn to_line(&self, id: Id) -> String {
        if id.is_null() {
            self.to_notification().to_line()
        } else {
            self.to_request(id).to_line()
        }
    }
}

/// A line as one side reads it: a typed call (`id` is [`Id::Null`] for a
/// notification) or a response to one of its own requests.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming<M> {
    /// A request or notification of a known method.
    Call {
        /// The id to answer with; null for a notification.
        id: Id,
        /// The typed method.
        method: M,
    },
    /// An answer to a request this side sent.
    Response(Response),
}

impl<M: Method> Incoming<M> {
    /// Parses one line (without `\n`): `Incoming::<ClientMethod>` on the
    /// miner side, `Incoming::<ServerMethod>` on the pool side.
    pub fn from_line(line: &str) -> Result<Self, ParseError> {
        match Message::from_line(line)? {
            Message::Request(r) => Ok(Incoming::Call {
                method: typed(&r.id, &r.method, &r.params)?,
                id: r.id,
            }),
            Message::Notification(n) => Ok(Incoming::Call {
                method: typed(&Id::Null, &n.method, &n.params)?,
                id: Id::Null,
            }),
            Message::Response(r) => Ok(Incoming::Response(r)),
        }
    }
}

fn typed<M: Method>(id: &Id, method: &str, params: &[Value]) -> Result<M, ParseError> {
    M::from_call(method, params)
        .map_err(|kind| ParseError::new(Some(id.clone()), Some(method.to_owned()), kind))
}

macro_rules! try_from_envelope {
    ($method:ty) => {
        impl TryFrom<&Request> for $method {
            type Error = ParseError;
            fn try_from(r: &Request) -> Result<Self, ParseError> {
                typed(&r.id, &r.method, &r.params)
            }
        }

        impl TryFrom<&Notification> for $method {
            type Error = ParseError;
            fn try_from(n: &Notification) -> Result<Self, ParseError> {
                typed(&Id::Null, &n.method, &n.params)
            }
        }
    };
}

try_from_envelope!(ClientMethod);
try_from_envelope!(ServerMethod);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::Difficulty;

    #[test]
    fn one_call_reads_a_line_into_a_typed_call() {
        let line = r#"{"id":4,"method":"mining.suggest_difficulty","params":[512]}"#;
        assert_eq!(
            Incoming::<ClientMethod>::from_line(line).unwrap(),
            Incoming::Call {
                id: Id::from(4),
                method: ClientMethod::SuggestDifficulty(Difficulty::try_new(512.0).unwrap()),
            }
        );
        let line = r#"{"id":null,"method":"client.show_message","params":["hi"]}"#;
        assert_eq!(
            Incoming::<ServerMethod>::from_line(line).unwrap(),
            Incoming::Call {
                id: Id::Null,
                method: ServerMethod::ShowMessage("hi".into()),
            }
        );
    }

    #[test]
    fn unknown_methods_keep_the_id_so_a_server_can_answer() {
        let err = Incoming::<ClientMethod>::from_line(r#"{"id":"q","method":"mining.ping"}"#)
            .unwrap_err();
        assert_eq!(
            *err.kind(),
            ParseErrorKind::UnknownMethod("mining.ping".into())
        );
        assert_eq!(err.id(), Some(&Id::from("q")));
        assert!(err.to_response().is_some());
    }

    #[test]
    fn a_side_does_not_accept_the_other_sides_methods() {
        let notify_from_miner = r#"{"id":1,"method":"mining.set_difficulty","params":[1]}"#;
        assert!(matches!(
            Incoming::<ClientMethod>::from_line(notify_from_miner)
                .unwrap_err()
                .kind(),
            ParseErrorKind::UnknownMethod(_)
        ));
        let submit_from_pool = r#"{"id":1,"method":"mining.submit","params":[]}"#;
        assert!(matches!(
            Incoming::<ServerMethod>::from_line(submit_from_pool)
                .unwrap_err()
                .kind(),
            ParseErrorKind::UnknownMethod(_)
        ));
    }

    #[test]
    fn envelopes_convert_with_try_from() {
        let request = ClientMethod::ExtranonceSubscribe.to_request(Id::from(3));
        assert_eq!(
            ClientMethod::try_from(&request).unwrap(),
            ClientMethod::ExtranonceSubscribe
        );
        let notification = ServerMethod::GetVersion.to_notification();
        assert_eq!(
            ServerMethod::try_from(&notification).unwrap(),
            ServerMethod::GetVersion
        );
        assert_eq!(
            ServerMethod::GetVersion.to_line(Id::from(8)),
            r#"{"id":8,"method":"client.get_version","params":[]}"#
        );
    }
}
