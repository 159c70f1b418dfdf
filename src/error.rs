//! The library's one error type: every variant names the image, and where it applies the
//! operation and the offset.

use std::io;

/// A `Result` with rbdcp's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O call on an image failed at an offset.
    #[error("{op} on {image} at offset {offset}: {err}")]
    Io {
        /// The operation, such as `read` or `write`.
        op: &'static str,
        /// The image, as the user named it.
        image: String,
        /// The byte offset of the request.
        offset: u64,
        /// What the system said.
        err: io::Error,
    },
    /// Opening, creating or finishing an image failed.
    #[error("{op} {image}: {err}")]
    Open {
        /// The operation, such as `open` or `create`.
        op: &'static str,
        /// The image, as the user named it.
        image: String,
        /// What the system said.
        err: io::Error,
    },
    /// The destination exists and `--overwrite` was not given.
    #[error("{image} already exists (add --overwrite to replace it)")]
    Exists {
        /// The destination.
        image: String,
    },
    /// A destination that cannot grow is smaller than the source.
    #[error("{image} holds {have} bytes, but {need} bytes must be written")]
    TooSmall {
        /// The destination.
        image: String,
        /// Its size.
        have: u64,
        /// The source's size.
        need: u64,
    },
    /// A location on the command line is malformed.
    #[error("invalid location {text:?}: {reason}")]
    Location {
        /// The text as given.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The combination asked for cannot be done.
    #[error("{0}")]
    Unsupported(String),
    /// Connecting to a cluster failed.
    #[error("cannot connect to {cluster}: {err}{}", connect_hint(.err))]
    Connect {
        /// The cluster: its conf file and user (never a key).
        cluster: String,
        /// What librados said.
        err: io::Error,
    },
    /// A snapshot that must exist does not.
    #[error("snapshot {snap:?} not found on {image}")]
    NoSnap {
        /// The image.
        image: String,
        /// The snapshot.
        snap: String,
    },
    /// A snapshot that must not exist yet does.
    #[error("{image} already has a snapshot {snap:?}")]
    SnapExists {
        /// The image.
        image: String,
        /// The snapshot.
        snap: String,
    },
    /// A diff stream holds something it must not.
    #[error("diff stream {stream}: at byte {offset}: expected {expected}, found {found}")]
    Stream {
        /// The stream (a path, or `-`).
        stream: String,
        /// The byte offset in the stream.
        offset: u64,
        /// What was expected there.
        expected: String,
        /// What was there.
        found: String,
    },
    /// The run was stopped from outside (for example by Ctrl-C).
    #[error("interrupted")]
    Interrupted,
}

/// A hint on what to check after a failed connect.
fn connect_hint(err: &io::Error) -> &'static str {
    match err.raw_os_error() {
        Some(13) | Some(1) => " (check the user's key in the keyring and its caps)",
        Some(110) => " (no monitor answered in time; check mon_host and the network, or raise --connect-timeout)",
        Some(2) => " (a conf or keyring file is missing, or the conf names no monitor)",
        Some(5) => " (is the keyring readable and well-formed?)",
        _ => "",
    }
}

impl Error {
    /// Builds an [`Error::Io`].
    pub fn io(op: &'static str, image: &str, offset: u64, err: io::Error) -> Self {
        Error::Io {
            op,
            image: image.to_owned(),
            offset,
            err,
        }
    }

    /// Builds an [`Error::Stream`].
    pub fn stream(stream: &str, offset: u64, expected: &str, found: &str) -> Self {
        Error::Stream {
            stream: stream.to_owned(),
            offset,
            expected: expected.to_owned(),
            found: found.to_owned(),
        }
    }

    /// Builds an [`Error::Open`].
    pub fn open(op: &'static str, image: &str, err: io::Error) -> Self {
        Error::Open {
            op,
            image: image.to_owned(),
            err,
        }
    }

    /// Whether trying the same call again may succeed (a time-out, an interrupted call).
    pub fn is_transient(&self) -> bool {
        let kind = match self {
            Error::Io { err, .. } | Error::Open { err, .. } | Error::Connect { err, .. } => {
                err.kind()
            }
            _ => return false,
        };
        matches!(
            kind,
            io::ErrorKind::TimedOut | io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_error_names_op_image_and_offset() {
        let e = Error::io(
            "write",
            "/tmp/x.img",
            4096,
            io::Error::from_raw_os_error(28),
        );
        let s = e.to_string();
        assert!(s.starts_with("write on /tmp/x.img at offset 4096: "), "{s}");
        assert!(s.contains("No space left"), "{s}");
        assert!(!e.is_transient());
        let t = Error::io("read", "a", 0, io::ErrorKind::TimedOut.into());
        assert!(t.is_transient());
    }
}
