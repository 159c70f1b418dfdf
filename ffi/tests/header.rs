//! Checks every declaration in `src/lib.rs` against the installed `rbd/librbd.h` with the C compiler.
//!
//! Like libc's ctest and git2-rs's systest, but without a build step: a small parser reads
//! lib.rs (which keeps to one plain form per item), writes C `_Static_assert`s for each fn,
//! type, constant and struct field, and `cc -c` must accept them. Struct sizes and offsets
//! come from `size_of`/`offset_of!` in the `layouts!` table below, which must list the same
//! structs and fields as lib.rs.

use std::{fmt::Write as _, fs, mem, path::Path, process::Command};

use librbd_sys as sys;

/// The crate's C version, the build metadata of `0.1.0+1.16.0`.
fn crate_c_version() -> &'static str {
    env!("CARGO_PKG_VERSION")
        .split_once('+')
        .expect("version has +build metadata")
        .1
}

#[test]
fn links_and_reports_crate_version() {
    let (mut major, mut minor, mut extra) = (-1, -1, -1);
    // SAFETY: rbd_version only writes the three ints, which outlive the call.
    unsafe { sys::rbd_version(&mut major, &mut minor, &mut extra) };
    assert!(extra >= 0, "rbd_version did not write extra");
    let want = (sys::LIBRBD_VER_MAJOR, sys::LIBRBD_VER_MINOR);
    assert_eq!(
        (major, minor),
        want,
        "loaded librbd is {major}.{minor}.{extra}"
    );
    let consts = format!("{}.{}.{}", want.0, want.1, sys::LIBRBD_VER_EXTRA);
    assert_eq!(
        consts,
        crate_c_version(),
        "LIBRBD_VER_* vs Cargo.toml build metadata"
    );
}

#[test]
fn declarations_match_header() {
    let src = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let items = Parser::new(&src).items();
    let counts = [
        ("pub fn ", items.fns.len()),
        ("pub const ", items.consts.len()),
        ("pub type ", items.types.len()),
        ("pub struct ", items.structs.len()),
    ];
    for (what, n) in counts {
        let code = src.lines().map(|l| l.split("//").next().unwrap());
        let found = code.filter(|l| l.contains(what)).count();
        assert!(n > 0, "parsed no `{what}` items");
        assert_eq!(
            n, found,
            "lib.rs has {found} `{what}` lines, the parser found {n}"
        );
    }

    let c = c_checks(&items);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let (c_file, o_file) = (
        dir.join("librbd_header_check.c"),
        dir.join("librbd_header_check.o"),
    );
    fs::write(&c_file, &c).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(&cc)
        .args(["-std=gnu11", "-Wall", "-c", "-o"])
        .arg(&o_file)
        .arg(&c_file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cc}: {e}"));
    assert!(
        out.status.success(),
        "lib.rs disagrees with rbd/librbd.h ({}):\n{}",
        c_file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The C file: one `_Static_assert` per fn, type, constant, struct and field.
fn c_checks(items: &Items) -> String {
    let mut c = String::from(
        "#include <stdbool.h>\n#include <stddef.h>\n#include <stdint.h>\n\
         #include <sys/types.h>\n#include <rbd/librbd.h>\n\
         #define SAME(a, b) __builtin_types_compatible_p(a, b)\n\n",
    );
    let mut check =
        |cond: String, msg: String| writeln!(c, "_Static_assert({cond}, \"{msg}\");").unwrap();
    for (name, value) in &items.consts {
        check(
            format!("({name}) == {value}ULL"),
            format!("const {name}: lib.rs says {value}"),
        );
    }
    for (name, ty) in &items.types {
        let t = c_decl(ty, "");
        check(
            format!("SAME({name}, {t})"),
            format!("type {name}: lib.rs says {t}"),
        );
    }
    let layouts = rust_layouts();
    let parsed: Vec<_> = items
        .structs
        .iter()
        .map(|(s, f)| (*s, f.iter().map(|f| f.0).collect()))
        .collect();
    let table: Vec<_> = layouts
        .iter()
        .map(|l| (l.name, l.fields.iter().map(|f| f.0).collect::<Vec<_>>()))
        .collect();
    assert_eq!(
        parsed, table,
        "lib.rs structs vs the layouts! table in this test"
    );
    for (l, (name, fields)) in layouts.iter().zip(&items.structs) {
        check(
            format!("sizeof({name}) == {}", l.size),
            format!("sizeof {name}: Rust says {}", l.size),
        );
        check(
            format!("_Alignof({name}) == {}", l.align),
            format!("alignof {name}: Rust says {}", l.align),
        );
        for ((field, ty), (_, offset)) in fields.iter().zip(&l.fields) {
            let t = c_decl(ty, "");
            check(
                format!("offsetof({name}, {field}) == {offset}"),
                format!("{name}.{field}: Rust offset {offset}"),
            );
            check(
                format!("SAME(__typeof__((({name} *)0)->{field}), {t})"),
                format!("{name}.{field}: lib.rs says {t}"),
            );
        }
    }
    for (name, ty) in &items.fns {
        let t = c_decl(ty, "");
        check(
            format!("SAME(__typeof__(&{name}), {t})"),
            format!("fn {name}: lib.rs says {t}"),
        );
    }
    c
}

/// Size, alignment and field offsets of one struct, from Rust.
struct Layout {
    name: &'static str,
    size: usize,
    align: usize,
    fields: Vec<(&'static str, usize)>,
}

macro_rules! layouts {
    ($($s:ident { $($f:ident),* $(,)? })*) => {
        vec![$(Layout {
            name: stringify!($s),
            size: mem::size_of::<sys::$s>(),
            align: mem::align_of::<sys::$s>(),
            fields: vec![$((stringify!($f), mem::offset_of!(sys::$s, $f))),*],
        }),*]
    };
}

/// Every `#[repr(C)]` struct in lib.rs with its fields in order.
fn rust_layouts() -> Vec<Layout> {
    layouts! {
        rbd_image_info_t { size, obj_size, num_objs, order, block_name_prefix, parent_pool, parent_name }
        rbd_snap_info_t { id, size, name }
        rbd_image_spec_t { id, name }
        rbd_linked_image_spec_t { pool_id, pool_name, pool_namespace, image_id, image_name, trash }
        rbd_snap_spec_t { id, namespace_type, name }
    }
}

/// A Rust type as lib.rs writes it. `konst` on a pointee means `*const`.
#[derive(Debug)]
enum Ty {
    Named { name: String, konst: bool },
    Ptr { to: Box<Ty>, konst: bool },
    Array(Box<Ty>, String),
    Fn(Vec<Ty>, Option<Box<Ty>>),
}

/// C spelling of `ty` around declarator `d`: `c_decl(*const c_char, "p")` is `const char *p`.
fn c_decl(ty: &Ty, d: &str) -> String {
    match ty {
        Ty::Named { name, konst } => {
            let c = match name.as_str() {
                "c_char" => "char",
                "c_int" => "int",
                "c_uint" => "unsigned int",
                "c_void" => "void",
                "u8" => "uint8_t",
                "u32" => "uint32_t",
                "u64" => "uint64_t",
                "i64" => "int64_t",
                "usize" => "size_t",
                "isize" => "ssize_t",
                "bool" => "bool",
                other => other, // a type or struct declared in lib.rs, named as in the header
            };
            format!("{}{c} {d}", if *konst { "const " } else { "" })
                .trim_end()
                .to_string()
        }
        Ty::Ptr { to, konst } => {
            let d = format!("*{}{d}", if *konst { " const " } else { "" });
            let wrap = matches!(**to, Ty::Fn(..) | Ty::Array(..));
            c_decl(to, &if wrap { format!("({d})") } else { d })
        }
        Ty::Array(of, len) => c_decl(of, &format!("{d}[{len}]")),
        Ty::Fn(params, ret) => {
            let ps: Vec<_> = params.iter().map(|p| c_decl(p, "")).collect();
            let ps = if ps.is_empty() {
                "void".to_string()
            } else {
                ps.join(", ")
            };
            let void = Ty::Named {
                name: "c_void".into(),
                konst: false,
            };
            c_decl(ret.as_deref().unwrap_or(&void), &format!("{d}({ps})"))
        }
    }
}

/// What lib.rs declares, in file order.
#[derive(Default)]
struct Items<'a> {
    consts: Vec<(&'a str, u128)>,
    types: Vec<(&'a str, Ty)>,
    structs: Vec<(&'a str, Vec<(&'a str, Ty)>)>,
    /// Each fn as a pointer-to-function type.
    fns: Vec<(&'a str, Ty)>,
}

/// A strict parser for the forms lib.rs uses; anything else panics.
struct Parser<'a> {
    toks: Vec<&'a str>,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Self {
        let (b, mut toks, mut i) = (src.as_bytes(), Vec::new(), 0);
        while i < b.len() {
            let start = i;
            let word = |i: usize| i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_');
            match b[i] {
                c if c.is_ascii_whitespace() => i += 1,
                b'/' if b.get(i + 1) == Some(&b'/') => {
                    i += src[i..].find('\n').unwrap_or(src.len() - i)
                }
                b'/' if b.get(i + 1) == Some(&b'*') => panic!("lib.rs: use // comments"),
                b'"' => i += 2 + src[i + 1..].find('"').unwrap(),
                c if c.is_ascii_alphanumeric() || c == b'_' => {
                    while word(i) {
                        i += 1
                    }
                }
                _ if ["::", "->", "<<"].iter().any(|p| src[i..].starts_with(p)) => i += 2,
                _ => i += 1,
            }
            if i > start && !b[start].is_ascii_whitespace() && !src[start..i].starts_with("//") {
                toks.push(&src[start..i]);
            }
        }
        Parser { toks, pos: 0 }
    }

    fn peek(&self, ahead: usize) -> &'a str {
        self.toks.get(self.pos + ahead).copied().unwrap_or("<end>")
    }

    fn next(&mut self) -> &'a str {
        let t = self.peek(0);
        self.pos += 1;
        t
    }

    fn expect(&mut self, want: &str) {
        let got = self.next();
        assert_eq!(got, want, "lib.rs: expected `{want}` at token {}", self.pos);
    }

    fn items(mut self) -> Items<'a> {
        let mut items = Items::default();
        while self.pos < self.toks.len() {
            let repr_c = self.attributes();
            if self.peek(0) == "use" {
                while self.next() != ";" {}
                continue;
            }
            match (self.next(), self.next()) {
                ("pub", "const") => {
                    let name = self.next();
                    self.expect(":");
                    self.ty();
                    self.expect("=");
                    items.consts.push((name, self.value()));
                }
                ("pub", "type") => {
                    let name = self.next();
                    self.expect("=");
                    items.types.push((name, self.ty()));
                    self.expect(";");
                }
                ("pub", "struct") => {
                    let name = self.next();
                    assert!(repr_c, "lib.rs: struct {name} is not #[repr(C)]");
                    items.structs.push((name, self.fields()));
                }
                ("extern", "\"C\"") => self.extern_block(&mut items.fns),
                (a, b) => panic!("lib.rs: unexpected `{a} {b}` at token {}", self.pos),
            }
        }
        items
    }

    /// Skips `#[..]` and `#![..]`; says whether one was `#[repr(C)]`.
    fn attributes(&mut self) -> bool {
        let mut repr_c = false;
        while self.peek(0) == "#" {
            let inner = self.peek(1) == "!";
            self.pos += 1 + usize::from(inner);
            self.expect("[");
            repr_c |= !inner && self.toks[self.pos..].starts_with(&["repr", "(", "C", ")", "]"]);
            while self.next() != "]" {}
        }
        repr_c
    }

    /// `N;` or `N << M;`, N and M decimal or 0x hex.
    fn value(&mut self) -> u128 {
        let num = |t: &str| {
            match t.strip_prefix("0x") {
                Some(hex) => u128::from_str_radix(hex, 16),
                None => t.parse(),
            }
            .unwrap_or_else(|_| panic!("lib.rs: `{t}` is not a plain number"))
        };
        let mut v = num(self.next());
        if self.peek(0) == "<<" {
            self.pos += 1;
            v <<= num(self.next());
        }
        self.expect(";");
        v
    }

    fn fields(&mut self) -> Vec<(&'a str, Ty)> {
        let mut fields = Vec::new();
        self.expect("{");
        while self.peek(0) != "}" {
            self.attributes();
            self.expect("pub");
            let name = self.next();
            self.expect(":");
            fields.push((name, self.ty()));
            if self.peek(0) == "," {
                self.pos += 1;
            }
        }
        self.expect("}");
        fields
    }

    fn extern_block(&mut self, fns: &mut Vec<(&'a str, Ty)>) {
        self.expect("{");
        while self.peek(0) != "}" {
            self.attributes();
            self.expect("pub");
            self.expect("fn");
            let name = self.next();
            let ty = Ty::Fn(self.params(), self.ret());
            fns.push((
                name,
                Ty::Ptr {
                    to: Box::new(ty),
                    konst: false,
                },
            ));
            self.expect(";");
        }
        self.expect("}");
    }

    /// `(a: T, U, ..)`: parameter names are optional.
    fn params(&mut self) -> Vec<Ty> {
        let mut params = Vec::new();
        self.expect("(");
        while self.peek(0) != ")" {
            if self.peek(1) == ":" {
                self.pos += 2;
            }
            params.push(self.ty());
            if self.peek(0) == "," {
                self.pos += 1;
            }
        }
        self.expect(")");
        params
    }

    fn ret(&mut self) -> Option<Box<Ty>> {
        (self.peek(0) == "->").then(|| {
            self.pos += 1;
            Box::new(self.ty())
        })
    }

    fn ty(&mut self) -> Ty {
        match self.next() {
            "*" => {
                let konst = match self.next() {
                    "const" => true,
                    "mut" => false,
                    t => panic!("lib.rs: `*{t}` at token {}", self.pos),
                };
                let mut to = self.ty();
                if let Ty::Named { konst: k, .. } | Ty::Ptr { konst: k, .. } = &mut to {
                    *k = konst;
                }
                Ty::Ptr {
                    to: Box::new(to),
                    konst: false,
                }
            }
            "[" => {
                let of = self.ty();
                self.expect(";");
                let len = self.next().to_string();
                self.expect("]");
                Ty::Array(Box::new(of), len)
            }
            "Option" => {
                self.expect("<");
                let ty = self.ty();
                assert!(
                    matches!(&ty, Ty::Ptr { to, .. } if matches!(**to, Ty::Fn(..))),
                    "lib.rs: Option of a non-fn"
                );
                self.expect(">");
                ty
            }
            "unsafe" | "extern" => {
                if self.toks[self.pos - 1] == "unsafe" {
                    self.expect("extern");
                }
                self.expect("\"C\"");
                self.expect("fn");
                let ty = Ty::Fn(self.params(), self.ret());
                Ty::Ptr {
                    to: Box::new(ty),
                    konst: false,
                }
            }
            name if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => Ty::Named {
                name: name.to_string(),
                konst: false,
            },
            t => panic!("lib.rs: unexpected `{t}` in a type at token {}", self.pos),
        }
    }
}
