//! Records the build time as the clock floor of last resort (BMC clocks can start at the
//! epoch). Reproducible builds (Yocto) pass SOURCE_DATE_EPOCH, which wins.
//!
//! Release binaries for x86-64 and AArch64 are linked with packed relative relocations
//! (DT_RELR, glibc >= 2.36): about 0.35 MB less on flash (README "Size on flash"). Only the
//! link of the binary changes, so no dependency is rebuilt for it.
fn main() {
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    // GNU ld packs relative relocations on x86-64 (binutils 2.38) and AArch64 (2.41); on
    // 32-bit ARM (AST2500/AST2600) it would only warn that the option is ignored.
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let packs = matches!(arch.as_str(), "x86_64" | "aarch64");
    if std::env::var("PROFILE").as_deref() == Ok("release") && packs {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-changed=build.rs");
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        });
    println!("cargo:rustc-env=BMC_PAIRING_BUILD_EPOCH={epoch}");
}
