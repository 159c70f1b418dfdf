//! How the engine tells the outside world how far it has come.

/// Receives progress from a running job. Calls come from many workers at once.
pub trait Progress: Sync {
    /// The job will cover `total` bytes (data and zeroes); 0 when unknown (a stream).
    fn start(&self, _total: u64) {}

    /// `bytes` more were done.
    fn advance(&self, _bytes: u64) {}

    /// Every chunk below `offset` is done (the low watermark a resume would start from).
    fn mark(&self, _offset: u64) {}

    /// The job ended, well or not.
    fn finish(&self) {}
}

/// Progress that goes nowhere.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Progress for Silent {}
