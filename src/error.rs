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
    /// A setting is wrong: an environment variable, a time zone.
    #[error("{0}")]
    Config(String),
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
    /// Another live run holds the destination.
    #[error("{image} is busy: {holder} holds it; wait for that run to end, or stop it")]
    Busy {
        /// The destination.
        image: String,
        /// Who holds it: host and process.
        holder: String,
    },
    /// The job cannot go on without an operator's decision (a progress record made for
    /// another source, a changed snapshot).
    #[error("refusing to write {image}: {reason}")]
    Refused {
        /// The destination.
        image: String,
        /// What changed, and what to do about it.
        reason: String,
    },
    /// A transient error that outlived its retries.
    #[error("{last} (failed {attempts} times)")]
    Retried {
        /// How many times the call was made.
        attempts: u32,
        /// The last error (in the message already, so not a `source`).
        last: Box<Error>,
    },
    /// A job failed after its destination was opened: what it wrote is kept for a rerun.
    #[error("{cause}; what was written is kept: run the same command again to resume, or `rbdcp discard {dst}` to drop it")]
    Resumable {
        /// The destination.
        dst: String,
        /// What went wrong (in the message already, so not a `source`).
        cause: Box<Error>,
    },
    /// Writes got no answer for too long: the cluster does not answer (a dead OSD, a
    /// client whose lock librbd cannot take back).
    #[error(
        "{requests} {what}(s) got no answer for {secs} s: the {side}'s cluster does not answer (see --op-timeout)",
        side = if *what == "read" { "source" } else { "destination" }
    )]
    Stalled {
        /// What got no answer: "write" or "read".
        what: &'static str,
        /// Requests in flight.
        requests: usize,
        /// Seconds without a completion.
        secs: u64,
    },
    /// The job failed while requests were in flight that never completed; they were
    /// abandoned, so the sink must stay open.
    #[error("{cause} ({requests} write(s) in flight abandoned)")]
    Abandoned {
        /// Requests still in flight.
        requests: usize,
        /// Why the job failed.
        cause: Box<Error>,
    },
    /// The run's lease on its destination went unrenewed for so long that another run may
    /// take the destination.
    #[error("lost the lease on {image}: not renewed for {secs} s, so another run may take it")]
    LeaseLost {
        /// The destination.
        image: String,
        /// Seconds since the last renewal.
        secs: u64,
    },
    /// The destination's pool, or its cluster, is full.
    #[error(
        "pool full: {image} cannot take more data ({err}); raise the pool's quota or free space"
    )]
    PoolFull {
        /// The destination.
        image: String,
        /// What librados said.
        err: io::Error,
    },
}

/// What an error means for whoever runs rbdcp: the process's exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 1: the job failed; running it again may help (and resumes it).
    Failed,
    /// 2: usage, configuration or permission; running it again will not help.
    Usage,
    /// 3: refused until an operator decides.
    Refused,
    /// 4: another run holds the destination.
    Busy,
}

impl Exit {
    /// The exit status.
    pub fn code(self) -> u8 {
        match self {
            Exit::Failed => 1,
            Exit::Usage => 2,
            Exit::Refused => 3,
            Exit::Busy => 4,
        }
    }
}

/// A hint on what to check after a failed connect.
fn connect_hint(err: &io::Error) -> &'static str {
    match err.raw_os_error() {
        Some(libc::EACCES) | Some(libc::EPERM) => " (check the user's key in the keyring and its caps)",
        Some(libc::ETIMEDOUT) => " (no monitor answered in time; check mon_host and the network, or raise --connect-timeout)",
        Some(libc::ENOENT) => " (a conf or keyring file is missing, or the conf names no monitor)",
        Some(libc::EIO) => " (is the keyring readable and well-formed?)",
        _ => "",
    }
}

impl Error {
    /// The error underneath [`Error::Resumable`] and [`Error::Retried`].
    pub fn root(&self) -> &Error {
        match self {
            Error::Retried { last: e, .. }
            | Error::Resumable { cause: e, .. }
            | Error::Abandoned { cause: e, .. } => e.root(),
            e => e,
        }
    }

    /// Whether requests were abandoned in flight ([`Error::Abandoned`]): the sink they
    /// went to must not be closed.
    pub fn abandoned(&self) -> bool {
        match self {
            Error::Abandoned { .. } => true,
            Error::Retried { last: e, .. } | Error::Resumable { cause: e, .. } => e.abandoned(),
            _ => false,
        }
    }

    /// Whether only a new connection can mend it: the client was blocklisted (ESHUTDOWN),
    /// writes stopped answering ([`Error::Stalled`], [`Error::Abandoned`]), the lease
    /// went unrenewed ([`Error::LeaseLost`]), or a call timed out on every attempt (after
    /// an OSD pause, a client's session with it can stay wedged while a new client's works).
    pub fn wants_new_connection(&self) -> bool {
        self.abandoned()
            || matches!(self.root(), Error::Stalled { .. } | Error::LeaseLost { .. })
            || self.errno() == Some(libc::ESHUTDOWN)
            || self.timed_out_throughout()
    }

    /// Whether every attempt of a retried call timed out.
    fn timed_out_throughout(&self) -> bool {
        match self {
            Error::Retried { last, .. } => last.errno() == Some(libc::ETIMEDOUT),
            Error::Resumable { cause: e, .. } | Error::Abandoned { cause: e, .. } => {
                e.timed_out_throughout()
            }
            _ => false,
        }
    }

    /// `self` as the error of a job whose destination `dst` keeps what was written.
    pub fn kept(self, dst: &str) -> Error {
        match self {
            e @ (Error::Busy { .. } | Error::Refused { .. } | Error::Resumable { .. }) => e,
            e => Error::Resumable {
                dst: dst.to_owned(),
                cause: Box::new(e),
            },
        }
    }

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

    /// The errno behind the error, where the system gave one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Io { err, .. }
            | Error::Open { err, .. }
            | Error::Connect { err, .. }
            | Error::PoolFull { err, .. } => err.raw_os_error(),
            Error::Retried { last: e, .. }
            | Error::Resumable { cause: e, .. }
            | Error::Abandoned { cause: e, .. } => e.errno(),
            _ => None,
        }
    }

    /// Whether trying the same call again, on the same connection, may succeed: a
    /// time-out, a reset or dropped connection, EAGAIN, EBUSY, an interrupted call.
    /// ENOENT, ENOSPC, EDQUOT, EROFS, EIO and permission errors are permanent; so is a
    /// blocklisted client (ESHUTDOWN), which needs a new connection (see
    /// [`Error::wants_new_connection`]).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Io { err, .. } | Error::Open { err, .. } | Error::Connect { err, .. } => {
                match err.raw_os_error() {
                    Some(e) => TRANSIENT.contains(&e),
                    None => matches!(
                        err.kind(),
                        io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                            | io::ErrorKind::WouldBlock
                    ),
                }
            }
            _ => false,
        }
    }

    /// What the error means for the exit status.
    pub fn exit(&self) -> Exit {
        match self {
            Error::Busy { .. } => Exit::Busy,
            Error::Refused { .. } => Exit::Refused,
            Error::Location { .. } | Error::Unsupported(_) | Error::Config(_) => Exit::Usage,
            Error::Retried { last: e, .. }
            | Error::Resumable { cause: e, .. }
            | Error::Abandoned { cause: e, .. } => e.exit(),
            _ if matches!(self.errno(), Some(libc::EPERM | libc::EACCES)) => Exit::Usage,
            _ => Exit::Failed,
        }
    }
}

/// errnos worth another try on the same connection.
const TRANSIENT: &[i32] = &[
    libc::ETIMEDOUT,
    libc::ECONNRESET,
    libc::ECONNABORTED,
    libc::ECONNREFUSED,
    libc::ENOTCONN,
    libc::EPIPE,
    libc::EAGAIN,
    libc::EBUSY,
    libc::EINTR,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_error_names_op_image_and_offset() {
        let e = Error::io(
            "write",
            "/tmp/x.img",
            4096,
            io::Error::from_raw_os_error(libc::ENOSPC),
        );
        let s = e.to_string();
        assert!(s.starts_with("write on /tmp/x.img at offset 4096: "), "{s}");
        assert!(s.contains("No space left"), "{s}");
        assert!(!e.is_transient());
        let t = Error::io("read", "a", 0, io::ErrorKind::TimedOut.into());
        assert!(t.is_transient());
    }

    #[test]
    fn errnos_decide_retries_and_exit_codes() {
        let e = |n| Error::io("write", "img", 0, io::Error::from_raw_os_error(n));
        for n in [libc::ETIMEDOUT, libc::ECONNRESET, libc::EAGAIN, libc::EBUSY] {
            assert!(e(n).is_transient(), "{n}");
            assert_eq!(e(n).exit(), Exit::Failed);
        }
        for n in [
            libc::ENOENT,
            libc::ENOSPC,
            libc::EDQUOT,
            libc::EROFS,
            libc::EIO,
            libc::ESHUTDOWN,
        ] {
            assert!(!e(n).is_transient(), "{n}");
            assert_eq!(e(n).exit(), Exit::Failed, "{n}");
        }
        for n in [libc::EPERM, libc::EACCES] {
            assert!(!e(n).is_transient());
            assert_eq!(e(n).exit(), Exit::Usage);
        }
        let retried = Error::Retried {
            attempts: 6,
            last: Box::new(e(libc::ETIMEDOUT)),
        };
        assert!(
            retried.to_string().ends_with("(failed 6 times)"),
            "{retried}"
        );
        assert!(!retried.is_transient(), "retries are spent");
        let busy = Error::Busy {
            image: "x".into(),
            holder: "host h, process 1".into(),
        };
        assert_eq!(busy.exit().code(), 4);
        let refused = Error::Refused {
            image: "x".into(),
            reason: "r".into(),
        };
        assert_eq!(refused.exit().code(), 3);
        assert!(!refused.wants_new_connection());
        assert!(retried.wants_new_connection(), "time-outs throughout");
        let failed = Error::Retried {
            attempts: 4,
            last: Box::new(e(libc::ECONNRESET)),
        };
        assert!(!failed.wants_new_connection());
        let blocklisted = e(libc::ESHUTDOWN).kept("dst");
        assert!(blocklisted.wants_new_connection());
        let stalled = Error::Abandoned {
            requests: 2,
            cause: Box::new(Error::Stalled {
                what: "write",
                requests: 2,
                secs: 30,
            }),
        };
        assert!(stalled.kept("dst").wants_new_connection());
    }
}
