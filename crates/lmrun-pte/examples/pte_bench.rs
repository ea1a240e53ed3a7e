//! Greedy-decode a `.pte` (optionally with `.ptd` data files) and print tokens/s:
//! `pte_bench MODEL.pte [DATA.ptd...] [--mode file|mmap|...] [--n 32] [--threads N]`.
use std::time::Instant;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut take = |flag: &str| -> Option<String> {
        let i = args.iter().position(|a| a == flag)?;
        args.remove(i);
        (i < args.len()).then(|| args.remove(i))
    };
    let mode: lmrun_loader::LoadMode = take("--mode")
        .unwrap_or_else(|| "mmap-mlock-ignore-errors".into())
        .parse()
        .expect("load mode");
    let n: usize = take("--n").map_or(32, |s| s.parse().expect("--n"));
    let threads: Option<usize> = take("--threads").map(|s| s.parse().expect("--threads"));
    let pte = std::path::PathBuf::from(&args[0]);
    let data: Vec<_> = args[1..].iter().map(std::path::PathBuf::from).collect();
    let t0 = Instant::now();
    let mut m = lmrun_pte::Module::from_path(&pte, &data, mode).expect("load");
    if let Some(t) = threads {
        m.set_threads(t).expect("threads");
    }
    m.load_method("forward").expect("load forward");
    let load = t0.elapsed();
    let dynamic = matches!(
        m.get("enable_dynamic_shape"),
        Ok(lmrun_pte::EValue::Bool(true))
    );
    let prompt = [325i64, 259, 66, 337];
    let t1 = Instant::now();
    let mut logits = if dynamic {
        m.forward_logits(&prompt, 0).expect("prefill")
    } else {
        let mut l = Vec::new();
        for (i, &t) in prompt.iter().enumerate() {
            l = m.forward_logits(&[t], i as i64).expect("prefill");
        }
        l
    };
    let prefill = t1.elapsed();
    let t2 = Instant::now();
    let mut ids = Vec::new();
    for pos in (prompt.len() as i64..).take(n) {
        let best = logits
            .iter()
            .enumerate()
            .fold(
                (0, f32::NEG_INFINITY),
                |b, (i, &x)| if x > b.1 { (i, x) } else { b },
            )
            .0 as i64;
        ids.push(best);
        if ids.len() == n {
            break;
        }
        logits = m.forward_logits(&[best], pos).expect("decode");
    }
    let decode = t2.elapsed();
    println!("ids: {ids:?}");
    println!(
        "load {:.1} ms, prefill {} tokens {:.1} ms, decode {} tokens {:.1} ms = {:.1} tokens/s",
        load.as_secs_f64() * 1e3,
        prompt.len(),
        prefill.as_secs_f64() * 1e3,
        n - 1,
        decode.as_secs_f64() * 1e3,
        (n - 1) as f64 / decode.as_secs_f64()
    );
    println!("{:?}", m.load_report());
}
