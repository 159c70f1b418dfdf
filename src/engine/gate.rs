//! A sink readied on its first write, not before the first read: the reads of a copy start
//! while an RBD destination written in place still takes its exclusive lock.

use std::sync::Mutex;

use super::flight::{Block, Done};
use super::ImageSink;
use crate::error::{Error, Result};

/// `dst`, made ready ([`ImageSink::ready`]), `size` bytes long and, with `allocate`, given
/// room for those ranges, all before anything is written to it or it is finished.
pub(super) struct Gate<'a> {
    dst: &'a dyn ImageSink,
    size: u64,
    allocate: Vec<(u64, u64)>,
    /// `None` until opened; then whether that worked.
    opened: Mutex<Option<bool>>,
}

impl<'a> Gate<'a> {
    pub(super) fn new(dst: &'a dyn ImageSink, size: u64, allocate: Vec<(u64, u64)>) -> Gate<'a> {
        Gate {
            dst,
            size,
            allocate,
            opened: Mutex::new(None),
        }
    }

    /// Readies the sink once; its error goes to the first caller (the job's error: the
    /// engine keeps the first), later ones see [`Error::Interrupted`].
    fn open(&self) -> Result<()> {
        let mut opened = self.opened.lock().unwrap();
        match *opened {
            Some(true) => return Ok(()),
            Some(false) => return Err(Error::Interrupted),
            None => {}
        }
        let result = self
            .dst
            .ready()
            .and_then(|()| self.dst.resize(self.size))
            .and_then(|()| {
                self.allocate
                    .iter()
                    .try_for_each(|&(offset, len)| self.dst.allocate(offset, len))
            });
        *opened = Some(result.is_ok());
        result
    }
}

impl ImageSink for Gate<'_> {
    fn name(&self) -> &str {
        self.dst.name()
    }
    fn object_size(&self) -> Option<u64> {
        self.dst.object_size()
    }
    fn ordered(&self) -> bool {
        self.dst.ordered()
    }
    fn zeroed(&self) -> bool {
        self.dst.zeroed()
    }
    fn resize(&self, size: u64) -> Result<()> {
        self.open()?;
        self.dst.resize(size)
    }
    fn allocate(&self, offset: u64, len: u64) -> Result<()> {
        self.open()?;
        self.dst.allocate(offset, len)
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.open()?;
        self.dst.write_at(offset, data)
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        self.open()?;
        self.dst.write_zeroes(offset, len)
    }
    fn asynchronous(&self) -> bool {
        self.dst.asynchronous()
    }
    fn write_async(&self, offset: u64, data: Block, done: Done) {
        match self.open() {
            Ok(()) => self.dst.write_async(offset, data, done),
            Err(e) => done(Err(e)),
        }
    }
    fn zero_async(&self, offset: u64, len: u64, done: Done) {
        match self.open() {
            Ok(()) => self.dst.zero_async(offset, len, done),
            Err(e) => done(Err(e)),
        }
    }
    fn ready(&self) -> Result<()> {
        self.open()
    }
    fn flush(&self) -> Result<()> {
        self.open()?;
        self.dst.flush()
    }
    fn durable_when_landed(&self) -> bool {
        self.dst.durable_when_landed()
    }
    fn finish(&self) -> Result<()> {
        self.open()?;
        self.dst.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that logs what is asked of it; its `ready` fails when told to.
    #[derive(Default)]
    struct Log {
        said: Mutex<Vec<String>>,
        refuse: bool,
    }

    impl Log {
        fn say(&self, what: String) -> Result<()> {
            self.said.lock().unwrap().push(what);
            Ok(())
        }
        fn said(&self) -> Vec<String> {
            self.said.lock().unwrap().clone()
        }
    }

    impl ImageSink for Log {
        fn name(&self) -> &str {
            "log"
        }
        fn zeroed(&self) -> bool {
            false
        }
        fn ready(&self) -> Result<()> {
            self.say("ready".into())?;
            match self.refuse {
                true => Err(Error::Unsupported("no lock".into())),
                false => Ok(()),
            }
        }
        fn resize(&self, size: u64) -> Result<()> {
            self.say(format!("resize {size}"))
        }
        fn allocate(&self, offset: u64, len: u64) -> Result<()> {
            self.say(format!("allocate {offset}+{len}"))
        }
        fn write_at(&self, offset: u64, _: &[u8]) -> Result<()> {
            self.say(format!("write {offset}"))
        }
        fn write_zeroes(&self, offset: u64, _: u64) -> Result<()> {
            self.say(format!("zero {offset}"))
        }
        fn flush(&self) -> Result<()> {
            self.say("flush".into())
        }
        fn finish(&self) -> Result<()> {
            self.say("finish".into())
        }
    }

    #[test]
    fn the_sink_is_readied_resized_and_allocated_once_before_its_first_write() {
        let log = Log::default();
        let gate = Gate::new(&log, 100, vec![(0, 10)]);
        assert!(log.said().is_empty(), "nothing before the first write");
        gate.write_at(0, &[1; 10]).unwrap();
        gate.write_zeroes(10, 5).unwrap();
        gate.finish().unwrap();
        let want = [
            "ready",
            "resize 100",
            "allocate 0+10",
            "write 0",
            "zero 10",
            "finish",
        ];
        assert_eq!(log.said(), want);
    }

    #[test]
    fn a_sink_that_is_not_ready_takes_no_write_and_is_not_finished() {
        let log = Log {
            refuse: true,
            ..Log::default()
        };
        let gate = Gate::new(&log, 100, Vec::new());
        let first = gate.write_at(0, &[1; 10]).unwrap_err();
        assert!(first.to_string().contains("no lock"), "{first}");
        assert!(matches!(
            gate.write_at(10, &[1; 10]),
            Err(Error::Interrupted)
        ));
        assert!(matches!(gate.finish(), Err(Error::Interrupted)));
        assert_eq!(log.said(), ["ready"], "asked once, and nothing after");
    }
}
