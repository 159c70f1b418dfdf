//! How progress is shown on standard error (`--progress`): an indicatif bar on a terminal;
//! else one line (or one JSON object) every `--progress-interval`, which a log can hold.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rbdcp::engine::{Progress, Silent};

/// A progress bar with bytes, rate and ETA.
pub struct Bar(ProgressBar);

impl Progress for Bar {
    fn start(&self, total: u64) {
        if total == 0 {
            // Unknown (a stream being read): bytes and rate, no bar.
            let style = ProgressStyle::with_template(
                "{prefix} [{elapsed_precise}] {binary_bytes} {binary_bytes_per_sec}",
            )
            .expect("the template is valid");
            self.0.set_style(style);
        }
        self.0.set_length(total);
        self.0.reset_eta();
    }

    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// A bar when standard error is a terminal, else lines.
    Auto,
    /// A bar (drawn only on a terminal).
    Bar,
    /// One line every interval and at the end: bytes done, total, rate, ETA, retries.
    Lines,
    /// The same as JSON Lines.
    Json,
    /// Nothing.
    None,
}

/// What `--progress`, `--progress-interval` and `--no-progress` ask for.
#[derive(Debug, Clone)]
pub struct Shown {
    mode: Mode,
    every: Duration,
    retries: Arc<AtomicU64>,
}

impl Shown {
    /// `mode` (`auto` resolved here) every `secs`; `retries` counts the run's retries.
    pub fn new(mode: Mode, no_progress: bool, secs: u64, retries: Arc<AtomicU64>) -> Shown {
        let mode = match mode {
            _ if no_progress => Mode::None,
            Mode::Auto if std::io::stderr().is_terminal() => Mode::Bar,
            Mode::Auto => Mode::Lines,
            m => m,
        };
        Shown {
            mode,
            every: Duration::from_secs(secs.max(1)),
            retries,
        }
    }

    /// Whether a bar is drawn (then a summary line follows at the end).
    pub fn bar(&self) -> bool {
        self.mode == Mode::Bar && std::io::stderr().is_terminal()
    }

    /// The display of phase `label`.
    pub fn pick(&self, label: &str) -> Box<dyn Progress> {
        match self.mode {
            Mode::None => Box::new(Silent),
            Mode::Bar if !self.bar() => Box::new(Silent),
            Mode::Bar | Mode::Auto => {
                let style = ProgressStyle::with_template(
                    "{prefix} [{elapsed_precise}] {wide_bar} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}",
                )
                .expect("the template is valid");
                let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr())
                    .with_style(style)
                    .with_prefix(label.to_owned());
                Box::new(Bar(bar))
            }
            Mode::Lines | Mode::Json => Box::new(Lines {
                state: Arc::new(State {
                    label: label.to_owned(),
                    json: self.mode == Mode::Json,
                    total: AtomicU64::new(0),
                    done: AtomicU64::new(0),
                    started: Mutex::new(Instant::now()),
                    retries: Arc::clone(&self.retries),
                    stop: (Mutex::new(false), Condvar::new()),
                }),
                every: self.every,
                ticker: Mutex::new(None),
            }),
        }
    }
}

/// Progress as lines on standard error, from a ticker thread: never more often than
/// `every`, whatever the job's size, and once more at the end.
struct Lines {
    state: Arc<State>,
    every: Duration,
    ticker: Mutex<Option<JoinHandle<()>>>,
}

struct State {
    label: String,
    json: bool,
    total: AtomicU64,
    done: AtomicU64,
    started: Mutex<Instant>,
    retries: Arc<AtomicU64>,
    stop: (Mutex<bool>, Condvar),
}

impl State {
    fn line(&self) -> String {
        let (done, total) = (
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        );
        let secs = self.started.lock().unwrap().elapsed().as_secs_f64();
        let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
        let eta = (total > 0 && rate > 0.0).then(|| total.saturating_sub(done) as f64 / rate);
        let retries = self.retries.load(Ordering::Relaxed);
        if self.json {
            return serde_json::json!({
                "bytes_done": done,
                "bytes_total": (total > 0).then_some(total),
                "bytes_per_second": rate.round(),
                "eta_seconds": eta.map(f64::round),
                "retries": retries,
            })
            .to_string();
        }
        let of = match total {
            0 => String::new(),
            t => format!(
                " of {} ({:.0}%)",
                rbdcp::size::human(t),
                done as f64 * 100.0 / t as f64
            ),
        };
        let eta = eta.map_or(String::new(), |e| format!(", ETA {e:.0} s"));
        format!(
            "rbdcp: {}: {}{of}, {}/s{eta}, {retries} retries",
            self.label,
            rbdcp::size::human(done),
            rbdcp::size::human(rate as u64)
        )
    }
}

impl Progress for Lines {
    fn start(&self, total: u64) {
        self.state.total.store(total, Ordering::Relaxed);
        *self.state.started.lock().unwrap() = Instant::now();
        let (state, every) = (Arc::clone(&self.state), self.every);
        let ticker = std::thread::Builder::new()
            .name("rbdcp-progress".into())
            .spawn(move || {
                let (stopped, wake) = &state.stop;
                let mut s = stopped.lock().unwrap();
                loop {
                    s = wake.wait_timeout(s, every).unwrap().0;
                    if *s {
                        return;
                    }
                    eprintln!("{}", state.line());
                }
            });
        *self.ticker.lock().unwrap() = ticker.ok();
    }

    fn advance(&self, bytes: u64) {
        self.state.done.fetch_add(bytes, Ordering::Relaxed);
    }

    fn finish(&self) {
        let Some(ticker) = self.ticker.lock().unwrap().take() else {
            return;
        };
        *self.state.stop.0.lock().unwrap() = true;
        self.state.stop.1.notify_all();
        let _ = ticker.join();
        eprintln!("{}", self.state.line());
    }
}
