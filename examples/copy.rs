//! Copies one image to another through the library: `cargo run --example copy -- SRC DST`.

use rbdcp::backend::{open_sink, open_source, SinkOptions, SourceOptions};
use rbdcp::engine::{copy, Limits, Options, Silent, Throttle};
use rbdcp::Location;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [src, dst] = args.as_slice() else {
        return Err("usage: copy SRC DST".into());
    };
    let src: Location = src.parse()?;
    let dst: Location = dst.parse()?;
    let source = open_source(&src, &SourceOptions::default())?;
    // A new destination, made like the source (for rbd: its size, object size and features).
    let opts = SinkOptions {
        size: source.size(),
        layout: source.layout(),
        ..SinkOptions::default()
    };
    let sink = open_sink(&dst, &opts)?;
    // At most 200 MiB/s, the default 4 MiB chunks and 16 workers.
    let throttle = Throttle::new(Limits {
        bytes_per_second: Some(200 << 20),
        ops_per_second: None,
    });
    let report = copy(
        source.as_ref(),
        sink.as_ref(),
        &Options::default(),
        &throttle,
        &Silent,
    )?;
    println!(
        "{src} -> {dst}: {} bytes read, {} written, {} zeroed in {:.2} s",
        report.bytes_read, report.bytes_written, report.bytes_zero, report.seconds
    );
    Ok(())
}
