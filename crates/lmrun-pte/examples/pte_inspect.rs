//! Print the inspect summary of `.pte`/`.ptd` files (text, or JSON with `--json`).
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    for a in args.iter().filter(|a| !a.starts_with("--")) {
        let p = std::path::Path::new(a);
        if a.ends_with(".ptd") {
            match lmrun_pte::inspect_ptd(p) {
                Ok(s) if json => {
                    println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default())
                }
                Ok(s) => print!("{}", s.to_text()),
                Err(e) => eprintln!("error: {e}"),
            }
        } else {
            match lmrun_pte::inspect_pte(p) {
                Ok(s) if json => {
                    println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default())
                }
                Ok(s) => print!("{}", s.to_text()),
                Err(e) => eprintln!("error: {e}"),
            }
        }
    }
}
