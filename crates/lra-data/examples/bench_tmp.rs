use lra_data::listops::*;
use std::time::Instant;
fn main() {
    let t = Instant::now();
    let splits = generate(&GenerateConfig::default()).unwrap();
    println!("generate: {:?}", t.elapsed());
    let n: usize = splits.iter().flatten().map(|e| e.token_len()).sum();
    println!("mean len {}", n as f64 / 100000.0);
    let dir = std::env::temp_dir().join("lra_bench_tmp");
    let t = Instant::now();
    write_dataset(&dir, &splits).unwrap();
    println!("write: {:?}", t.elapsed());
    drop(splits);
    let t = Instant::now();
    let data = load(&dir).unwrap();
    println!("load: {:?} {}", t.elapsed(), data.train.len());
    let size = std::fs::metadata(split_file(&dir, lra_data::Split::Train))
        .unwrap()
        .len();
    println!("train file {} MB", size / 1_000_000);
    std::fs::remove_dir_all(&dir).unwrap();
}
