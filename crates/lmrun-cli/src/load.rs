//! `lmrun load`: load a whole file as one load in a chosen mode, touch every page so residency
//! is real, and report the load report plus the process's memory (peak RSS, RssAnon, RssFile).
//! This is how a user sees what each load mode costs on their machine.

use std::path::PathBuf;

use anyhow::Context;
use lmrun_loader::{open_loader, touch_pages, LoadMode, Prefetch, ProcessMemory};

/// Arguments of `lmrun load`.
#[derive(clap::Args, Debug)]
pub struct LoadArgs {
    /// The file to load (any model file).
    model: PathBuf,

    /// How to load it: file, mmap, mmap-mlock or mmap-mlock-ignore-errors.
    #[arg(long, default_value_t = lmrun::DEFAULT_LOAD_MODE)]
    load_mode: LoadMode,

    /// Prefetch the mapping before touching it: none, willneed or populate (see `lmrun run`).
    #[arg(long, default_value_t = Prefetch::None)]
    prefetch: Prefetch,

    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Run `lmrun load`.
pub fn run(args: LoadArgs) -> anyhow::Result<()> {
    // Loader errors already name the file.
    let loader = open_loader(&args.model, args.load_mode)?;
    let size = usize::try_from(loader.size()).context("file too large for this platform")?;
    let buffer = loader
        .load(0, size)
        .with_context(|| format!("load with --load-mode {} failed", args.load_mode))?;
    let prefetch = buffer.prefetch(args.prefetch);
    let t_touch = std::time::Instant::now();
    let checksum = touch_pages(&buffer);
    let touch_ms = t_touch.elapsed().as_secs_f64() * 1e3;
    let mem = ProcessMemory::read();
    let report = loader.report();
    let peak = lmrun_loader::peak_rss_bytes().or(mem.peak_rss_bytes);

    if args.json {
        let mut obj = crate::run::load_object(
            &args.model,
            &report,
            [peak, mem.rss_anon_bytes, mem.rss_file_bytes],
        );
        obj["prefetch"] = serde_json::to_value(prefetch)?;
        obj["touch_ms"] = touch_ms.into();
        obj["locked_bytes"] = mem.locked_bytes.into();
        obj["page_checksum"] = checksum.into();
        crate::outln!("{obj}")?;
    } else {
        let mib = |b: Option<u64>| {
            b.map_or("n/a".to_string(), |b| {
                format!("{:.1} MiB", b as f64 / 1048576.0)
            })
        };
        crate::outln!("path          {}", args.model.display())?;
        crate::outln!("mode          {}", args.load_mode)?;
        crate::outln!("file          {} bytes", loader.size())?;
        crate::outln!("mapped        {} bytes", report.bytes_mapped)?;
        crate::outln!("read          {} bytes", report.bytes_read)?;
        crate::outln!("locked        {} bytes", report.bytes_locked)?;
        match report.mlock.errno() {
            Some(errno) => crate::outln!(
                "mlock         failed: {} (errno {errno}); continued unlocked",
                lmrun_loader::strerror(errno)
            )?,
            None => crate::outln!("mlock         {}", report.mlock.name())?,
        }
        crate::outln!("load time     {:.2} ms", report.elapsed_ms())?;
        crate::outln!("prefetch      {}", prefetch.summary())?;
        crate::outln!("touch time    {touch_ms:.2} ms (reading one byte of every page)")?;
        crate::outln!("peak RSS      {}", mib(peak))?;
        crate::outln!("RssAnon       {}", mib(mem.rss_anon_bytes))?;
        crate::outln!("RssFile       {}", mib(mem.rss_file_bytes))?;
        crate::outln!("VmLck         {}", mib(mem.locked_bytes))?;
    }
    Ok(())
}
