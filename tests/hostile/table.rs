//! One row of the table: a request to one listener, the answer it must get,
//! and how many messages it may add to the queues (zero for every
//! hostile request; one for a genuine callback or its replay).

use crate::support::{Listener, Pace};

#[derive(Debug, Clone)]
pub struct Case {
    pub name: &'static str,
    pub to: Listener,
    /// The raw bytes sent.
    pub request: Vec<u8>,
    pub pace: Pace,
    /// `None`: the connection is closed without an answer.
    pub status: Option<u16>,
    /// Must appear in the answer's body.
    pub fragment: String,
    /// A header the answer must carry, with a fragment of its value.
    pub header: Option<(&'static str, &'static str)>,
    /// Messages this request adds to the callbacks and hints queues.
    pub queued: u64,
    /// Whether the request is slow by design (run together, not one by one).
    pub slow: bool,
}

impl Case {
    pub fn receiver(name: &'static str, request: Vec<u8>) -> Case {
        Case::new(name, Listener::Receiver, request)
    }

    pub fn shop(name: &'static str, request: Vec<u8>) -> Case {
        Case::new(name, Listener::Shop, request)
    }

    fn new(name: &'static str, to: Listener, request: Vec<u8>) -> Case {
        Case {
            name,
            to,
            request,
            pace: Pace::AllAtOnce,
            status: None,
            fragment: String::new(),
            header: None,
            queued: 0,
            slow: false,
        }
    }

    /// The status and a fragment of the body.
    pub fn answers(mut self, status: u16, fragment: impl Into<String>) -> Case {
        self.status = Some(status);
        self.fragment = fragment.into();
        self
    }

    /// No answer at all: the server closes the connection.
    pub fn closed_unanswered(mut self) -> Case {
        self.status = None;
        self.fragment = String::new();
        self
    }

    pub fn with_header(mut self, name: &'static str, value: &'static str) -> Case {
        self.header = Some((name, value));
        self
    }

    /// Sent slowly: the server's timeouts decide the answer.
    pub fn paced(mut self, pace: Pace) -> Case {
        self.pace = pace;
        self.slow = true;
        self
    }

    /// A genuine callback (or its replay): the receiver takes it.
    pub fn queues(mut self, messages: u64) -> Case {
        self.queued = messages;
        self
    }
}
