//! The driver's errors as this backend shows them.

use std::fmt;

use mongodb::error::ErrorKind;

/// A MongoDB driver error, the source of this backend's [`cachier_core::Error::Backend`].
///
/// The driver's own message embeds its labels and the `Debug` form of its cause, so the
/// server's reply would show twice among driver internals; this one shows each error of the
/// chain by its kind's message, and the server's reply with its code name and number, once.
#[derive(Debug)]
pub struct DriverError(mongodb::error::Error);

impl DriverError {
    /// The driver's error.
    pub fn driver(&self) -> &mongodb::error::Error {
        &self.0
    }

    /// The driver's error, unwrapped.
    pub fn into_driver(self) -> mongodb::error::Error {
        self.0
    }
}

impl From<mongodb::error::Error> for DriverError {
    fn from(error: mongodb::error::Error) -> Self {
        DriverError(error)
    }
}

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::new();
        let mut next = Some(&self.0);
        while let Some(error) = next {
            match &*error.kind {
                ErrorKind::Command(command) => {
                    // An authentication error quotes the server's message already.
                    if !text.contains(&command.message) {
                        append(&mut text, ": ", &command.message);
                    }
                    let code = format!("({}, code {})", command.code_name, command.code);
                    append(&mut text, " ", &code);
                }
                kind => {
                    let message = kind.to_string();
                    if !text.contains(&message) {
                        append(&mut text, ": ", &message);
                    }
                }
            }
            next = std::error::Error::source(error).and_then(|cause| {
                // The driver returns its boxed cause as the source.
                cause
                    .downcast_ref::<Box<mongodb::error::Error>>()
                    .map(|boxed| &**boxed)
                    .or_else(|| cause.downcast_ref::<mongodb::error::Error>())
            });
        }
        f.write_str(&text)
    }
}

fn append(text: &mut String, separator: &str, part: &str) {
    if !text.is_empty() {
        text.push_str(separator);
    }
    text.push_str(part);
}

/// The chain is in the message (see the type's documentation).
impl std::error::Error for DriverError {}
