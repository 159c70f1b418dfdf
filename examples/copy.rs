//! Copies one image to another through the library's copy job, resumably:
//! `cargo run --example copy -- SRC DST`. Killed and run again, it resumes.

use rbdcp::engine::{Limits, Throttle};
use rbdcp::job::copy::{copy, Copy};
use rbdcp::job::Context;
use rbdcp::Location;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [src, dst] = args.as_slice() else {
        return Err("usage: copy SRC DST".into());
    };
    let src: Location = src.parse()?;
    let dst: Location = dst.parse()?;
    // At most 200 MiB/s, the default 4 MiB chunks and 16 workers, progress recorded
    // every 5 s, transient errors retried 5 times.
    let ctx = Context {
        throttle: Throttle::new(Limits {
            bytes_per_second: Some(200 << 20),
            ops_per_second: None,
        }),
        ..Context::default()
    };
    let outcome = copy(&Copy::new(src.clone(), dst.clone()), &ctx)?;
    let r = &outcome.report;
    println!(
        "{src} -> {dst}: {} bytes read, {} written, {} zeroed in {:.2} s (resumed from {:?})",
        r.bytes_read, r.bytes_written, r.bytes_zero, r.seconds, r.resumed_from
    );
    Ok(())
}
