//! Reads sizes and rates such as `4096`, `4K`, `200MiB` or `1.5GiB` (K/M/G are powers of 1024, as `rbd` reads them).

/// Parses a byte count; K, M, G, T (with or without `i`/`B`) are powers of 1024.
pub fn parse(text: &str) -> Result<u64, String> {
    let t = text.trim();
    // A rate may be written per second, as in `100M/s`.
    let t = t.strip_suffix("/s").unwrap_or(t);
    parse_size::Config::new()
        .with_binary()
        .parse_size(t)
        .map_err(|e| {
            format!("{text:?} is not a size ({e}); write it as 4096, 4K, 4M, 1G or 200MiB")
        })
}

/// Parses a byte count that must be above zero.
pub fn parse_nonzero(text: &str) -> Result<u64, String> {
    match parse(text)? {
        0 => Err(format!("{text:?} must be more than zero")),
        n => Ok(n),
    }
}

/// Formats a byte count for people: `4 MiB`, `1.50 GiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value.fract() == 0.0 {
        format!("{value} {}", UNITS[unit])
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_forms_rbd_reads() {
        assert_eq!(parse("4096"), Ok(4096));
        assert_eq!(parse("4K"), Ok(4096));
        assert_eq!(parse("4k"), Ok(4096));
        assert_eq!(parse("4M"), Ok(4 << 20));
        assert_eq!(parse("1G"), Ok(1 << 30));
        assert_eq!(parse("200MiB"), Ok(200 << 20));
        assert_eq!(parse("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse("100M/s"), Ok(100 << 20));
    }

    #[test]
    fn refuses_nonsense() {
        assert!(parse("fast").is_err());
        assert!(parse("-4M").is_err());
        assert!(parse("").is_err());
        assert!(parse_nonzero("0").is_err());
        assert_eq!(parse_nonzero("1"), Ok(1));
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(4 << 20), "4 MiB");
        assert_eq!(human(3 << 29), "1.50 GiB");
    }
}
