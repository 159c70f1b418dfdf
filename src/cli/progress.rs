//! Picks how progress is shown: an indicatif bar on standard error when it is a terminal, else nothing.

use std::io::IsTerminal;

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

/// Whether a bar would be shown.
pub fn shown(wanted: bool) -> bool {
    wanted && std::io::stderr().is_terminal()
}

/// A bar labelled `label` when `wanted` and standard error is a terminal, else silence.
pub fn pick(wanted: bool, label: &str) -> Box<dyn Progress> {
    if !shown(wanted) {
        return Box::new(Silent);
    }
    let style = ProgressStyle::with_template(
        "{prefix} [{elapsed_precise}] {wide_bar} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}",
    )
    .expect("the template is valid");
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr())
        .with_style(style)
        .with_prefix(label.to_owned());
    Box::new(Bar(bar))
}
