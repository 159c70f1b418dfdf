//! The `rbd diff v1` stream that `rbd export-diff` writes and `rbd import-diff` reads:
//! a banner, then `f`/`t`/`s` records, `w`/`z` records in offset order, and `e`; and the
//! image stream of `rbd export --export-format 2`, which carries an image with its
//! snapshots as a header and one `rbd diff v2` stream per snapshot and for the head.
//!
//! Layout (Ceph's `doc/dev/rbd-diff.rst`, `src/tools/rbd/action/Export.cc`): every number
//! is little-endian; a name is a le32 length and its bytes.
//! `f` from-snap name, `t` to-snap name, `s` le64 image size, `w` le64 offset, le64
//! length and the data, `z` le64 offset and le64 length, `e` the end. In a v2 diff every
//! record but `e` has a le64 payload length after its tag, and `p` (a u8) says whether the
//! to-snap is protected.

mod read;
mod write;

pub use read::{Header, ImageHeader, Reader, Record};
pub use write::{image_header, Writer};

/// The first 12 bytes of every v1 diff stream.
pub const BANNER: &[u8; 12] = b"rbd diff v1\n";

/// The first 12 bytes of every v2 diff (inside an image stream).
pub const BANNER_V2: &[u8; 12] = b"rbd diff v2\n";

/// The image stream of `rbd export --export-format 2`: banner, header records (tag, le64
/// payload length, payload) up to `E`, the diffs banner, a le64 number of diffs, and the
/// diffs.
pub mod image {
    /// The first bytes of the stream.
    pub const BANNER: &[u8] = b"rbd image v2\n";
    /// Before the number of diffs.
    pub const DIFFS: &[u8] = b"rbd image diffs v2\n";
    /// le64 object size order.
    pub const ORDER: u8 = b'O';
    /// le64 feature bits.
    pub const FEATURES: u8 = b'T';
    /// le64 stripe unit.
    pub const STRIPE_UNIT: u8 = b'U';
    /// le64 stripe count.
    pub const STRIPE_COUNT: u8 = b'C';
    /// An image-meta pair: le32 key length, key, le32 value length, value.
    pub const META: u8 = b'M';
    /// The end of the header (no length).
    pub const END: u8 = b'E';
}

/// The longest snapshot name `rbd import-diff` accepts.
pub const MAX_NAME: u32 = 4096;

/// Record tags.
pub mod tag {
    /// From snapshot.
    pub const FROM: u8 = b'f';
    /// To snapshot.
    pub const TO: u8 = b't';
    /// Image size.
    pub const SIZE: u8 = b's';
    /// Data.
    pub const WRITE: u8 = b'w';
    /// Zeroes.
    pub const ZERO: u8 = b'z';
    /// End.
    pub const END: u8 = b'e';
    /// The to-snap's protection (v2 only).
    pub const PROTECT: u8 = b'p';
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An image stream as `rbd export --export-format 2` lays it out: written by [`Writer`]
    /// and [`image_header`], read back by [`Reader`].
    #[test]
    fn image_streams_round_trip() {
        let h = ImageHeader {
            order: Some(22),
            features: Some(61),
            stripe_unit: Some(4 << 20),
            stripe_count: Some(1),
            meta: vec![("app.key".into(), "v".into())],
            diffs: 2,
        };
        let mut out = Vec::new();
        image_header(&mut out, &h).unwrap();
        let w = Writer::begin(out, true, None, Some(("s1", true)), 8 << 20).unwrap();
        let mut w = w;
        w.write(4096, &[7; 4096]).unwrap();
        w.zero(4 << 20, 1 << 20).unwrap();
        let out = w.end().unwrap();
        let out = Writer::begin(out, true, Some("s1"), None, 8 << 20)
            .unwrap()
            .end()
            .unwrap();
        let mut r = Reader::at(&out[..], "x", 0, 0);
        assert_eq!(r.image_header().unwrap(), h);
        let (d1, first) = r.diff(true).unwrap();
        assert_eq!(
            (d1.from, d1.to.as_deref(), d1.protected),
            (None, Some("s1"), true)
        );
        assert_eq!(
            first,
            Some(Record::Write {
                offset: 4096,
                len: 4096
            })
        );
        assert_eq!(r.data_vec().unwrap(), vec![7; 4096]);
        assert_eq!(
            r.next_record().unwrap(),
            Some(Record::Zero {
                offset: 4 << 20,
                len: 1 << 20
            })
        );
        assert_eq!(r.next_record().unwrap(), None);
        let (d2, first) = r.diff(true).unwrap();
        assert_eq!((d2.from.as_deref(), d2.to, first), (Some("s1"), None, None));
        assert_eq!(r.position(), out.len() as u64);
    }

    /// Ceph 16 writes the protection record's length as 8 (with one byte after it), and
    /// a v2 reader skips records it does not know by their length.
    #[test]
    fn v2_diffs_from_ceph_16_and_unknown_records_are_read() {
        let mut s = BANNER_V2.to_vec();
        s.extend([tag::TO, 6, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, b's', b'1']);
        s.extend([tag::PROTECT, 8, 0, 0, 0, 0, 0, 0, 0, 1]);
        s.extend([b'X', 3, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3]);
        s.push(tag::SIZE);
        s.extend(8u64.to_le_bytes());
        s.extend((1u64 << 20).to_le_bytes());
        s.push(b'Y');
        s.extend(1u64.to_le_bytes());
        s.push(9);
        s.push(tag::END);
        let mut r = Reader::at(&s[..], "x", 0, 0);
        let (h, first) = r.diff(true).unwrap();
        assert_eq!(
            (h.to.as_deref(), h.protected, h.size),
            (Some("s1"), true, 1 << 20)
        );
        assert_eq!(first, None);
        // A length that does not match its record is an error naming the offset.
        let mut bad = BANNER_V2.to_vec();
        bad.push(tag::SIZE);
        bad.extend(9u64.to_le_bytes());
        let e = Reader::at(&bad[..], "x", 0, 0).diff(true).unwrap_err();
        assert!(e.to_string().contains("at byte 12"), "{e}");
    }
}
