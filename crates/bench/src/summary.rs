//! The one-line-per-model summary a bench prints: float against the best static int8 row.
//! Printed as each dataset/model pair finishes (so the first figures appear seconds after
//! the build, not after the whole matrix) and again as a table at the end.

use crate::row::Row;

/// The summary's header line.
pub fn header() -> String {
    format!(
        "{:<22} {:>8} {:>8} {:>8} {:>7} {:>9} {:>9} {:>9}  best int8 method",
        "dataset/model",
        "f32 acc",
        "int8 acc",
        "chg pp",
        "size x",
        "b64 x f32",
        "x flex",
        "x ndarray"
    )
}

/// The summary line of `ds`/`model` from `rows` (ratios already derived); `None` when the
/// pair has no float reference row.
pub fn line(rows: &[Row], ds: &str, model: &str) -> Option<String> {
    let of = |r: &&Row| r.dataset == ds && r.model == model;
    let f = rows.iter().filter(of).find(|r| r.is_reference())?;
    let q = rows
        .iter()
        .filter(of)
        .filter(|r| r.method.starts_with("static-") && r.threads == 1 && r.backend == "quantlab")
        .max_by(|a, b| a.accuracy.total_cmp(&b.accuracy));
    let x = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}x"));
    let name = format!("{ds}/{model}");
    Some(match q {
        Some(q) => format!(
            "{:<22} {:>7.2}% {:>7.2}% {:>+8.2} {:>7} {:>9} {:>9} {:>9}  {}",
            name,
            f.accuracy * 100.0,
            q.accuracy * 100.0,
            -(q.accuracy_drop_pp.unwrap_or(0.0)),
            x(q.size_ratio),
            x(q.speedup_b64),
            x(q.speedup_b64_vs_burn_flex),
            x(q.speedup_b64_vs_burn_ndarray),
            q.method
        ),
        None => format!("{:<22} {:>7.2}%", name, f.accuracy * 100.0),
    })
}

/// Every pair's line, in the order the rows list them, after the header.
pub fn table(rows: &[Row]) -> Vec<String> {
    let mut pairs: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.dataset.as_str(), r.model.as_str()))
        .collect();
    pairs.dedup();
    std::iter::once(header())
        .chain(pairs.into_iter().filter_map(|(d, m)| line(rows, d, m)))
        .collect()
}
