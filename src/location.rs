//! Parses image locations: a local path, `-` for a stream, or
//! `rbd:POOL[/NAMESPACE]/IMAGE[@SNAP][:conf=PATH][:id=NAME][:keyring=PATH]` (qemu-img's spelling).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::Error;

/// Where an image lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// Standard input or output (`-`).
    Stdio,
    /// A raw image file or a block device.
    Path(PathBuf),
    /// An RBD image in a Ceph cluster.
    Rbd(RbdSpec),
}

/// An RBD image, optionally at a snapshot, with how to reach its cluster.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RbdSpec {
    /// The pool.
    pub pool: String,
    /// The RADOS namespace within the pool, if any.
    pub namespace: Option<String>,
    /// The image name.
    pub image: String,
    /// The snapshot, if any.
    pub snap: Option<String>,
    /// The cluster's configuration file (default: Ceph's search path).
    pub conf: Option<PathBuf>,
    /// The client id, without `client.` (default: `admin`).
    pub id: Option<String>,
    /// The keyring file (default: from the conf).
    pub keyring: Option<PathBuf>,
}

impl RbdSpec {
    /// The same image without a snapshot: where writes go.
    pub fn head(&self) -> RbdSpec {
        RbdSpec {
            snap: None,
            ..self.clone()
        }
    }
}

/// Prints `rbd:pool[/ns]/image[@snap]`: the image, never the credentials.
impl fmt::Display for RbdSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rbd:{}/", self.pool)?;
        if let Some(ns) = &self.namespace {
            write!(f, "{ns}/")?;
        }
        f.write_str(&self.image)?;
        if let Some(snap) = &self.snap {
            write!(f, "@{snap}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Stdio => f.write_str("-"),
            Location::Path(p) => write!(f, "{}", p.display()),
            Location::Rbd(spec) => spec.fmt(f),
        }
    }
}

impl FromStr for Location {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        if text == "-" {
            return Ok(Location::Stdio);
        }
        if text.is_empty() {
            return Err(bad(text, "it is empty"));
        }
        match text.strip_prefix("rbd:") {
            Some(rest) => parse_rbd(text, rest).map(Location::Rbd),
            None => Ok(Location::Path(PathBuf::from(text))),
        }
    }
}

fn bad(text: &str, reason: impl Into<String>) -> Error {
    Error::Location {
        text: redact(text),
        reason: reason.into(),
    }
}

/// Hides the value of any `key=` option: a secret never reaches an error message.
fn redact(text: &str) -> String {
    text.split(':')
        .map(|field| {
            if field.starts_with("key=") {
                "key=<hidden>"
            } else {
                field
            }
        })
        .collect::<Vec<_>>()
        .join(":")
}

/// Splits on `:` not escaped by a backslash, and removes the escapes.
fn split_fields(rest: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => fields.last_mut().unwrap().extend(chars.next()),
            ':' => fields.push(String::new()),
            c => fields.last_mut().unwrap().push(c),
        }
    }
    fields
}

fn parse_rbd(text: &str, rest: &str) -> Result<RbdSpec, Error> {
    let fields = split_fields(rest);
    let mut spec = RbdSpec::default();
    let (path, snap) = match fields[0].split_once('@') {
        Some((path, snap)) => (path, Some(snap)),
        None => (fields[0].as_str(), None),
    };
    let parts: Vec<&str> = path.split('/').collect();
    let (pool, namespace, image) = match parts.as_slice() {
        [pool, image] => (*pool, None, *image),
        [pool, ns, image] => (*pool, Some(*ns), *image),
        _ => {
            return Err(bad(
                text,
                "expected rbd:POOL/IMAGE or rbd:POOL/NAMESPACE/IMAGE",
            ))
        }
    };
    if pool.is_empty() || image.is_empty() || namespace == Some("") {
        return Err(bad(
            text,
            "the pool, namespace and image names must not be empty",
        ));
    }
    if snap == Some("") || snap.is_some_and(|s| s.contains('@')) {
        return Err(bad(
            text,
            "the snapshot name after '@' must be one non-empty name",
        ));
    }
    spec.pool = pool.to_owned();
    spec.namespace = namespace.map(str::to_owned);
    spec.image = image.to_owned();
    spec.snap = snap.map(str::to_owned);
    for field in &fields[1..] {
        let Some((key, value)) = field.split_once('=') else {
            return Err(bad(text, format!("option {field:?} is not KEY=VALUE")));
        };
        if value.is_empty() {
            return Err(bad(text, format!("option {key:?} has an empty value")));
        }
        match key {
            "conf" => spec.conf = Some(value.into()),
            "id" => spec.id = Some(value.strip_prefix("client.").unwrap_or(value).to_owned()),
            "keyring" => spec.keyring = Some(value.into()),
            _ => {
                return Err(bad(
                    text,
                    format!("unknown option {key:?} (known: conf, id, keyring)"),
                ))
            }
        }
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rbd(text: &str) -> RbdSpec {
        match text.parse::<Location>().unwrap() {
            Location::Rbd(spec) => spec,
            other => panic!("{text} parsed as {other:?}"),
        }
    }

    #[test]
    fn plain_paths_and_stdio() {
        assert_eq!("-".parse::<Location>().unwrap(), Location::Stdio);
        assert_eq!(
            "/dev/sdb".parse::<Location>().unwrap(),
            Location::Path("/dev/sdb".into())
        );
        assert_eq!(
            "pool/img".parse::<Location>().unwrap(),
            Location::Path("pool/img".into())
        );
        assert!("".parse::<Location>().is_err());
    }

    #[test]
    fn full_rbd_spec() {
        let s = rbd("rbd:p/ns/img@s1:conf=/etc/ceph/b.conf:id=client.backup:keyring=/k");
        assert_eq!(s.pool, "p");
        assert_eq!(s.namespace.as_deref(), Some("ns"));
        assert_eq!(s.image, "img");
        assert_eq!(s.snap.as_deref(), Some("s1"));
        assert_eq!(s.conf, Some("/etc/ceph/b.conf".into()));
        assert_eq!(s.id.as_deref(), Some("backup"));
        assert_eq!(s.keyring, Some("/k".into()));
        assert_eq!(s.to_string(), "rbd:p/ns/img@s1");
        assert_eq!(s.head().to_string(), "rbd:p/ns/img");
    }

    #[test]
    fn escaped_colon_in_a_path() {
        let s = rbd(r"rbd:p/img:conf=/a\:b.conf");
        assert_eq!(s.conf, Some("/a:b.conf".into()));
        assert_eq!(s.snap, None);
        assert_eq!(s.namespace, None);
    }

    #[test]
    fn malformed_rbd_specs() {
        for text in [
            "rbd:",
            "rbd:pool",
            "rbd:/img",
            "rbd:p/",
            "rbd:p//img",
            "rbd:a/b/c/d",
            "rbd:p/img@",
            "rbd:p/img@a@b",
            "rbd:p/img:conf",
            "rbd:p/img:conf=",
            "rbd:p/img:key=AQBsecret",
        ] {
            let err = text.parse::<Location>().unwrap_err().to_string();
            assert!(err.starts_with("invalid location"), "{text}: {err}");
        }
    }

    #[test]
    fn errors_never_echo_a_secret_key() {
        let err = "rbd:p/img:key=AQBsecret"
            .parse::<Location>()
            .unwrap_err()
            .to_string();
        assert!(!err.contains("AQBsecret"), "{err}");
        assert!(err.contains("key=<hidden>"), "{err}");
    }
}
