//! Records the build time as the clock floor of last resort (BMC clocks can start at the
//! epoch). Reproducible builds (Yocto) pass SOURCE_DATE_EPOCH, which wins.
//!
//! Release binaries for x86-64 and AArch64 are linked with packed relative relocations
//! (DT_RELR, glibc >= 2.36): about 0.35 MB less on flash (README "Size on flash"). Only the
//! link of the binary changes, so no dependency is rebuilt for it.
//!
//! On the same targets, release binaries (`panic = "abort"`) are linked without unwinding
//! tables (`.eh_frame`, its `.eh_frame_hdr` index and `.gcc_except_table`): nothing unwinds
//! when a panic aborts, so they are dead bytes, about 0.7 MB of the binary (README "Size on
//! flash"). A panic still prints its message and aborts; its backtrace is empty. (Were the
//! profile switched to unwinding, a panic would find no tables and abort all the same.)
fn main() {
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    // GNU ld packs relative relocations on x86-64 (binutils 2.38) and AArch64 (2.41); on
    // 32-bit ARM (AST2500/AST2600) it would only warn that the option is ignored.
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let packs = matches!(arch.as_str(), "x86_64" | "aarch64");
    if std::env::var("PROFILE").as_deref() == Ok("release") && packs {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
        // Cargo tells build scripts the target's panic strategy, not the profile's; the
        // release profile says "abort" (Cargo.toml), so only an override turns it back.
        println!("cargo:rerun-if-env-changed=CARGO_PROFILE_RELEASE_PANIC");
        if std::env::var("CARGO_PROFILE_RELEASE_PANIC").as_deref() != Ok("unwind") {
            discard_unwind_tables();
        }
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

/// Links the binaries without unwinding tables: no `.eh_frame_hdr` (so no PT_GNU_EH_FRAME
/// for an unwinder to look in), and a linker script fragment that discards `.eh_frame` and
/// `.gcc_except_table` from every input, the prebuilt std's included. `INSERT` keeps the
/// linker's default script for everything else.
fn discard_unwind_tables() {
    const SCRIPT: &str = "SECTIONS\n{\n  /DISCARD/ : { *(.eh_frame) *(.eh_frame.*) \
                          *(.gcc_except_table) *(.gcc_except_table.*) }\n}\nINSERT AFTER .text;\n";
    let Some(out_dir) = std::env::var_os("OUT_DIR") else {
        return;
    };
    let script = std::path::Path::new(&out_dir).join("discard-unwind-tables.ld");
    if std::fs::write(&script, SCRIPT).is_err() {
        // Without the script the binary keeps its tables: larger, never wrong.
        println!(
            "cargo:warning=cannot write {}; unwinding tables kept",
            script.display()
        );
        return;
    }
    println!("cargo:rustc-link-arg-bins=-Wl,--no-eh-frame-hdr");
    println!("cargo:rustc-link-arg-bins=-Wl,-T,{}", script.display());
}
