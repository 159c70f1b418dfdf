//! Links librbd and librados; `LIBRBD_LIB_DIR` points at another library directory.
fn main() {
    println!("cargo:rerun-if-env-changed=LIBRBD_LIB_DIR");
    if let Ok(dir) = std::env::var("LIBRBD_LIB_DIR") {
        println!("cargo:rustc-link-search=native={dir}");
    }
    println!("cargo:rustc-link-lib=dylib=rbd");
    println!("cargo:rustc-link-lib=dylib=rados");
}
