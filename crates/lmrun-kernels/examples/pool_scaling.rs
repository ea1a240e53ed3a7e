//! Does this machine give us all the pool's cores right now? Runs the same pure-compute job on
//! 1 and on 2 threads (each thread does the same amount of work): with two free cores both
//! wall times are equal; on a busy shared box the 2-thread time doubles. Run before trusting
//! 2-thread benchmark numbers: `cargo run --release -p lmrun-kernels --example pool_scaling`.

use std::time::Instant;

use lmrun_kernels::ThreadPool;

fn spin(n: u64) -> u64 {
    let mut x = 1u64;
    for i in 0..n {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i);
    }
    x
}

fn main() {
    let pools = [ThreadPool::new(1).unwrap(), ThreadPool::new(2).unwrap()];
    for _ in 0..3 {
        for pool in &pools {
            let mut ts = Vec::new();
            for _ in 0..15 {
                let s = Instant::now();
                pool.run(|_, _| {
                    std::hint::black_box(spin(20_000_000));
                });
                ts.push(s.elapsed().as_secs_f64());
            }
            ts.sort_by(|a, b| a.total_cmp(b));
            println!(
                "{} thread(s), 20M steps each: median wall {:.1} ms",
                pool.n_threads(),
                ts[ts.len() / 2] * 1e3
            );
        }
    }
}
