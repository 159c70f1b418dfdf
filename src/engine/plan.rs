//! Turns a source's extents into chunks, in offset order, aligned to the chunk size.

use super::Extent;

/// One unit of work: a range that is read and written (`data`) or zeroed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// Where it starts.
    pub offset: u64,
    /// How long it is; never more than the chunk size.
    pub len: u64,
    /// `true`: copy the bytes. `false`: make the range read as zeroes.
    pub data: bool,
}

impl Chunk {
    /// The bytes it holds in memory: its length for data, nothing for a zero chunk.
    pub fn data_len(&self) -> u64 {
        if self.data {
            self.len
        } else {
            0
        }
    }

    /// The offset just past its end.
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// Sorted, non-overlapping extents of an image, cut into chunks on demand.
#[derive(Debug, Clone)]
pub struct Plan {
    extents: Vec<Extent>,
    size: u64,
    chunk_size: u64,
}

impl Plan {
    /// Plans `extents` of an image of `size` bytes in chunks of `chunk_size`.
    ///
    /// Extents are sorted, cut at `size`, and merged where they touch; where two overlap the
    /// first one wins. With `fill_gaps`, every byte not in an extent becomes a zero extent:
    /// that is what a full copy onto a destination that is not known to be zero needs.
    pub fn new(mut extents: Vec<Extent>, size: u64, chunk_size: u64, fill_gaps: bool) -> Plan {
        assert!(chunk_size > 0, "chunk size must be above zero");
        extents.sort_by_key(|e| e.offset);
        let mut out: Vec<Extent> = Vec::with_capacity(extents.len());
        let mut covered = 0;
        for e in extents {
            let start = e.offset.max(covered);
            let end = e.end().min(size);
            if start >= end {
                continue;
            }
            if fill_gaps && start > covered {
                push(&mut out, Extent::zero(covered, start - covered));
            }
            push(
                &mut out,
                Extent {
                    offset: start,
                    len: end - start,
                    data: e.data,
                },
            );
            covered = end;
        }
        if fill_gaps && covered < size {
            push(&mut out, Extent::zero(covered, size - covered));
        }
        Plan {
            extents: out,
            size,
            chunk_size,
        }
    }

    /// The normalized extents.
    pub fn extents(&self) -> &[Extent] {
        &self.extents
    }

    /// The image size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The chunk size.
    pub fn chunk_size(&self) -> u64 {
        self.chunk_size
    }

    /// Bytes to copy and bytes to zero.
    pub fn totals(&self) -> (u64, u64) {
        self.extents.iter().fold((0, 0), |(data, zero), e| {
            if e.data {
                (data + e.len, zero)
            } else {
                (data, zero + e.len)
            }
        })
    }

    /// The chunks, in offset order; none crosses a multiple of the chunk size.
    pub fn chunks(&self) -> Chunks<'_> {
        Chunks {
            plan: self,
            index: 0,
            pos: self.extents.first().map_or(0, |e| e.offset),
        }
    }
}

fn push(out: &mut Vec<Extent>, e: Extent) {
    match out.last_mut() {
        Some(last) if last.end() == e.offset && last.data == e.data => last.len += e.len,
        _ => out.push(e),
    }
}

/// The iterator of [`Plan::chunks`].
#[derive(Debug, Clone)]
pub struct Chunks<'a> {
    plan: &'a Plan,
    index: usize,
    pos: u64,
}

impl Iterator for Chunks<'_> {
    type Item = Chunk;

    fn next(&mut self) -> Option<Chunk> {
        let e = self.plan.extents.get(self.index)?;
        let step = self.plan.chunk_size;
        let boundary = (self.pos / step + 1).saturating_mul(step);
        let end = e.end().min(boundary);
        let chunk = Chunk {
            offset: self.pos,
            len: end - self.pos,
            data: e.data,
        };
        self.pos = end;
        if end == e.end() {
            self.index += 1;
            if let Some(next) = self.plan.extents.get(self.index) {
                self.pos = next.offset;
            }
        }
        Some(chunk)
    }
}

/// The chunk size to use: `requested`, rounded up to a multiple of the object size unless
/// it already divides it or is a multiple of it, so no chunk straddles two objects needlessly.
pub fn chunk_size(requested: u64, object_size: Option<u64>) -> u64 {
    match object_size {
        Some(obj) if obj > 0 && requested % obj != 0 && obj % requested != 0 => {
            requested.div_ceil(obj) * obj
        }
        _ => requested,
    }
}

/// Block size at which data chunks are searched for zeroes.
pub const SPARSE_BLOCK: usize = 4096;

/// The shortest run of zero blocks inside a data chunk that is zeroed rather than written.
pub const SPARSE_GAP: usize = 64 * 1024;

/// Splits `buf` into runs `(start, end, data)` that tile it: runs of zero blocks at least
/// `gap` bytes long are zero runs, the rest data (a shorter zero run is written with its
/// neighbours: a separate call would cost more than it saves). All zeroes: one zero run.
pub fn sparse_runs(buf: &[u8], block: usize, gap: usize) -> Vec<(usize, usize, bool)> {
    let mut zeros: Vec<(usize, usize)> = Vec::new();
    let mut start = None;
    for (i, b) in buf.chunks(block).enumerate() {
        match (is_zero(b), start) {
            (true, None) => start = Some(i * block),
            (false, Some(s)) => {
                zeros.push((s, i * block));
                start = None;
            }
            _ => {}
        }
    }
    zeros.extend(start.map(|s| (s, buf.len())));
    zeros.retain(|&(s, e)| e - s >= gap || (s == 0 && e == buf.len()));
    let mut out = Vec::with_capacity(2 * zeros.len() + 1);
    let mut pos = 0;
    for (s, e) in zeros {
        if s > pos {
            out.push((pos, s, true));
        }
        out.push((s, e, false));
        pos = e;
    }
    if pos < buf.len() {
        out.push((pos, buf.len(), true));
    }
    out
}

/// Whether every byte of `buf` is zero.
pub fn is_zero(buf: &[u8]) -> bool {
    // OR-folding fixed blocks lets the compiler vectorize; `all` alone would not.
    let mut blocks = buf.chunks_exact(256);
    blocks.all(|b| b.iter().fold(0, |acc, &x| acc | x) == 0)
        && blocks.remainder().iter().all(|&x| x == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const M: u64 = 1 << 20;

    #[test]
    fn splits_at_chunk_boundaries() {
        let plan = Plan::new(vec![Extent::data(M / 2, 9 * M)], 16 * M, 4 * M, false);
        let got: Vec<_> = plan.chunks().map(|c| (c.offset, c.len)).collect();
        assert_eq!(
            got,
            vec![(M / 2, 7 * M / 2), (4 * M, 4 * M), (8 * M, 3 * M / 2)]
        );
    }

    #[test]
    fn fills_gaps_with_zero_extents() {
        let plan = Plan::new(vec![Extent::data(M, M)], 4 * M, 4 * M, true);
        assert_eq!(
            plan.extents(),
            &[
                Extent::zero(0, M),
                Extent::data(M, M),
                Extent::zero(2 * M, 2 * M)
            ]
        );
        assert_eq!(plan.totals(), (M, 3 * M));
    }

    #[test]
    fn sorts_merges_clips_and_drops_overlap() {
        let plan = Plan::new(
            vec![
                Extent::data(3 * M, 2 * M),
                Extent::data(0, M),
                Extent::data(M, M),
                Extent::zero(4 * M, M),
            ],
            4 * M + 10,
            4 * M,
            false,
        );
        assert_eq!(
            plan.extents(),
            &[Extent::data(0, 2 * M), Extent::data(3 * M, M + 10)]
        );
    }

    #[test]
    fn empty_plan_has_no_chunks() {
        assert_eq!(Plan::new(vec![], 8 * M, M, false).chunks().count(), 0);
        assert_eq!(Plan::new(vec![], 0, M, true).chunks().count(), 0);
    }

    #[test]
    fn chunk_size_follows_the_object_size() {
        assert_eq!(chunk_size(4 * M, Some(4 * M)), 4 * M);
        assert_eq!(chunk_size(M, Some(4 * M)), M);
        assert_eq!(chunk_size(8 * M, Some(4 * M)), 8 * M);
        assert_eq!(chunk_size(3 * M, Some(4 * M)), 4 * M);
        assert_eq!(chunk_size(5 * M, Some(4 * M)), 8 * M);
        assert_eq!(chunk_size(3 * M, None), 3 * M);
    }

    #[test]
    fn zero_detection() {
        let mut buf = vec![0u8; 4099];
        assert!(is_zero(&buf));
        assert!(is_zero(&[]));
        buf[4098] = 1;
        assert!(!is_zero(&buf));
        buf[4098] = 0;
        buf[17] = 0x80;
        assert!(!is_zero(&buf));
    }

    #[test]
    fn sparse_runs_split_on_long_zero_runs() {
        let mut buf = vec![1u8; 32 * 4096];
        buf[4096..20 * 4096].fill(0); // 19 blocks: a zero run
        buf[24 * 4096..26 * 4096].fill(0); // 2 blocks: too short
        buf[30 * 4096..].fill(0); // the tail, 2 blocks: too short
        let runs = sparse_runs(&buf, 4096, 16 * 4096);
        assert_eq!(
            runs,
            vec![
                (0, 4096, true),
                (4096, 20 * 4096, false),
                (20 * 4096, 32 * 4096, true)
            ]
        );
        assert_eq!(
            sparse_runs(&[0; 10_000], 4096, 65536),
            vec![(0, 10_000, false)]
        );
        assert_eq!(
            sparse_runs(&[7; 10_000], 4096, 65536),
            vec![(0, 10_000, true)]
        );
        assert_eq!(sparse_runs(&[], 4096, 65536), vec![]);
    }

    proptest! {
        /// Runs tile the buffer, zero runs hold only zeroes, and data runs start and end on
        /// block boundaries or the buffer's ends.
        #[test]
        fn sparse_runs_tile_the_buffer(blocks in prop::collection::vec(any::<bool>(), 0..64), tail in 0usize..100) {
            let mut buf: Vec<u8> = blocks.iter().flat_map(|&d| vec![u8::from(d); 512]).collect();
            buf.extend(std::iter::repeat_n(1u8, tail));
            let runs = sparse_runs(&buf, 512, 2048);
            let mut pos = 0;
            for &(s, e, data) in &runs {
                prop_assert_eq!(s, pos);
                prop_assert!(e > s);
                if !data {
                    prop_assert!(is_zero(&buf[s..e]));
                    prop_assert!(e - s >= 2048 || runs.len() == 1);
                }
                pos = e;
            }
            prop_assert_eq!(pos, buf.len());
        }
    }

    fn extents() -> impl Strategy<Value = Vec<(u64, u64, bool)>> {
        prop::collection::vec((0u64..1000, 1u64..200, any::<bool>()), 0..20)
    }

    proptest! {
        /// Chunks tile the normalized extents exactly, in order, within chunk boundaries.
        #[test]
        fn chunks_tile_the_extents(raw in extents(), chunk in 1u64..300, size in 0u64..1300, fill in any::<bool>()) {
            let input: Vec<Extent> = raw.iter().map(|&(o, l, d)| Extent { offset: o, len: l, data: d }).collect();
            let plan = Plan::new(input.clone(), size, chunk, fill);
            let mut covered = vec![None; size as usize];
            let mut last_end = 0;
            for c in plan.chunks() {
                prop_assert!(c.len > 0 && c.len <= chunk);
                prop_assert!(c.offset >= last_end);
                prop_assert_eq!(c.offset / chunk, (c.end() - 1) / chunk);
                last_end = c.end();
                for b in c.offset..c.end() {
                    prop_assert!(covered[b as usize].is_none());
                    covered[b as usize] = Some(c.data);
                }
            }
            // Every byte of an input data extent below `size` is covered by some chunk.
            for e in &input {
                for b in e.offset..e.end().min(size) {
                    prop_assert!(covered[b as usize].is_some(), "byte {} uncovered", b);
                }
            }
            if fill {
                prop_assert!(covered.iter().all(Option::is_some));
            }
            let (data, zero) = plan.totals();
            prop_assert_eq!(data, covered.iter().filter(|c| **c == Some(true)).count() as u64);
            prop_assert_eq!(zero, covered.iter().filter(|c| **c == Some(false)).count() as u64);
        }
    }
}
