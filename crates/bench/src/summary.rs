//! The one-line-per-model summary a bench prints: float against the best static int8 row
//! (8-bit weights and activations; the rows below 8 bits are the bit-width section's).
//! Printed as each dataset/model pair finishes (so the first figures appear seconds after
//! the build, not after the whole matrix) and again as a table at the end.

use crate::row::Row;

/// The summary's header line.
/// The `dataset/model` column's width: its longest name, at least 22 (an imported model's
/// file name can be longer than any built-in pair's).
pub fn name_width<'a>(names: impl IntoIterator<Item = (&'a str, &'a str)>) -> usize {
    names
        .into_iter()
        .map(|(d, m)| d.len() + 1 + m.len())
        .fold(22, usize::max)
}

/// The summary's header, its first column `width` wide.
pub fn header(width: usize) -> String {
    format!(
        "{:<width$} {:>8} {:>8} {:>8} {:>7} {:>9} {:>9} {:>9}  best int8 method",
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
pub fn line(rows: &[Row], ds: &str, model: &str, width: usize) -> Option<String> {
    let of = |r: &&Row| r.dataset == ds && r.model == model;
    let f = rows.iter().filter(of).find(|r| r.is_reference())?;
    let q = crate::row::headline(rows.iter().filter(of));
    let x = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}x"));
    // `~`: faster in some timing rounds and slower in others.
    let b64 = |q: &Row| {
        let mark = if q.speedup_b64_uncertain() { "~" } else { "" };
        format!("{}{mark}", x(q.speedup_b64))
    };
    let name = format!("{ds}/{model}");
    Some(match q {
        Some(q) => format!(
            "{:<width$} {:>7.2}% {:>7.2}% {:>+8.2} {:>7} {:>9} {:>9} {:>9}  {}",
            name,
            f.accuracy * 100.0,
            q.accuracy * 100.0,
            -(q.accuracy_drop_pp.unwrap_or(0.0)),
            x(q.size_ratio),
            b64(q),
            x(q.speedup_b64_vs_burn_flex),
            x(q.speedup_b64_vs_burn_ndarray),
            q.method
        ),
        None => format!("{:<width$} {:>7.2}%", name, f.accuracy * 100.0),
    })
}

/// Where a row's batch-64 latency rose above this fraction of its median in some round
/// (`(max - min) / median` over the rounds), the run says the machine was noisy.
pub const NOISY_SPREAD: f64 = 0.25;

/// The legend of `~`, for a table whose `lines` carry one.
pub fn legend(lines: &[String]) -> Option<String> {
    lines.iter().any(|l| l.contains("x~")).then(|| {
        "~: the speed-up's min-max over the timing rounds contains 1.00x: not significant".into()
    })
}

/// One line when the timing rounds disagreed by more than [`NOISY_SPREAD`] on some row.
pub fn noise(rows: &[Row]) -> Option<String> {
    let timed: Vec<&Row> = rows
        .iter()
        .filter(|r| r.latency_b64_rounds_us.len() > 1)
        .collect();
    let worst = timed
        .iter()
        .max_by(|a, b| a.latency_b64_spread().total_cmp(&b.latency_b64_spread()))?;
    if worst.latency_b64_spread() <= NOISY_SPREAD {
        return None;
    }
    let mut spreads: Vec<f64> = timed.iter().map(|r| r.latency_b64_spread()).collect();
    spreads.sort_by(f64::total_cmp);
    let noisy = spreads.iter().filter(|&&s| s > NOISY_SPREAD).count();
    Some(format!(
        "noisy machine: {noisy} of {} rows varied by more than {:.0}% across timing rounds (worst: {}/{} {} on {}, {} thread(s), {:.0}%; median row {:.0}%); compare speed-ups with their min-max",
        timed.len(),
        NOISY_SPREAD * 100.0,
        worst.dataset,
        worst.model,
        worst.method,
        worst.backend,
        worst.threads,
        worst.latency_b64_spread() * 100.0,
        crate::row::median_sorted(&spreads) * 100.0
    ))
}

/// What the int8 rows can be expected to gain on a CPU whose int8 kernel is `kernel`, when
/// that is less than a reader of "int8" expects: on AVX2 without VNNI, exact int8 is not
/// faster than float, and a summary showing int8 slower must not read as a defect.
pub fn kernel_note(kernel: &str) -> Option<String> {
    match kernel {
        "avx2" => Some(
            "int8 kernel avx2: this CPU has no VNNI, so exact int8 widens to 16-bit pairs and multiplies with vpmaddwd, 16 MACs per instruction plus an add: no more per instruction than f32's FMA, and the requantization comes on top, so int8 here is smaller but not faster than f32 (the per-layer tables give both measured peaks); int8's speed-ups need AVX-512 VNNI. ONNX Runtime's u8s8 kernels on such CPUs use vpmaddubsw, which saturates (docs/engine.md)".into(),
        ),
        "scalar" => Some(
            "int8 kernel scalar: no SIMD int8 path on this CPU; int8 rows show size and accuracy, not speed".into(),
        ),
        _ => None,
    }
}

/// Every pair's line, in the order the rows list them, after the header.
pub fn table(rows: &[Row]) -> Vec<String> {
    let mut pairs: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.dataset.as_str(), r.model.as_str()))
        .collect();
    pairs.dedup();
    let width = name_width(pairs.iter().copied());
    let lines: Vec<String> = pairs
        .into_iter()
        .filter_map(|(d, m)| line(rows, d, m, width))
        .collect();
    let legend = legend(&lines);
    std::iter::once(header(width))
        .chain(lines)
        .chain(legend)
        .chain(noise(rows))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_kernels_without_fast_int8_get_a_note() {
        assert!(kernel_note("avx2").is_some_and(|n| n.contains("VNNI")));
        assert!(kernel_note("scalar").is_some());
        assert!(kernel_note("avx512vnni").is_none());
    }

    #[test]
    fn the_name_column_fits_the_longest_name() {
        assert_eq!(
            name_width([("mnist", "mlp"), ("fashion-mnist", "logreg")]),
            22
        );
        let long = ("mnist", "mobilenet_small_opset13");
        assert_eq!(name_width([long]), 29);
        assert!(header(29).starts_with(&format!("{:<29} ", "dataset/model")));
    }

    fn timed(method: &str, rounds: &[f64], threads: usize) -> Row {
        let mut r = Row::new("d", "m", method, "cpu", "quantlab");
        r.threads = threads;
        r.latency_b64_rounds_us = rounds.to_vec();
        let mut s = rounds.to_vec();
        s.sort_by(f64::total_cmp);
        r.latency_b64_us = crate::row::median_sorted(&s);
        r.accuracy = 0.9;
        r
    }

    #[test]
    fn an_uncertain_speed_up_is_marked_and_explained() {
        let mut rows = vec![
            timed("f32", &[100.0, 100.0, 100.0], 1),
            timed("static-minmax-per-channel", &[90.0, 105.0, 98.0], 1),
        ];
        crate::row::derive_ratios(&mut rows);
        let t = table(&rows);
        assert!(t[1].contains("x~"), "{t:?}");
        assert!(t[2].starts_with("~:"), "{t:?}");
        assert_eq!(t.len(), 3, "quiet rounds: no noise line: {t:?}");
    }

    #[test]
    fn the_headline_is_the_8_bit_static_row_most_accurate_on_validation() {
        let row = |method: &str, accuracy: f64| {
            let mut r = timed(method, &[100.0], 1);
            r.accuracy = accuracy;
            r
        };
        let rows = vec![
            row("f32", 0.90),
            row("static-minmax-per-tensor", 0.89),
            row("static-mse-per-channel", 0.895),
            // More accurate, but below 8 bits, QAT or dynamic: not the int8 headline.
            row("static-minmax-per-channel-w4a4", 0.91),
            row("qat-w8a8", 0.92),
            row("dynamic", 0.93),
        ];
        let l = line(&rows, "d", "m", 22).expect("a float row");
        assert!(l.ends_with("static-mse-per-channel"), "{l}");
        assert!(l.contains("89.50%"), "{l}");
        // Chosen on the validation split where the rows have it; the test split reports it.
        let mut rows = rows;
        rows[1].val_accuracy = Some(0.97);
        rows[2].val_accuracy = Some(0.96);
        let l = line(&rows, "d", "m", 22).expect("a float row");
        assert!(l.ends_with("static-minmax-per-tensor"), "{l}");
        assert!(l.contains("89.00%"), "{l}");
        // A tie goes to the first row, whatever the timings.
        rows[2].val_accuracy = Some(0.97);
        rows[2].latency_b64_us = 1.0;
        let l = line(&rows, "d", "m", 22).expect("a float row");
        assert!(l.ends_with("static-minmax-per-tensor"), "{l}");
    }

    #[test]
    fn rounds_that_disagree_say_the_machine_was_noisy() {
        let mut rows = vec![
            timed("f32", &[100.0, 100.0, 200.0], 1),
            timed("static-minmax-per-channel", &[50.0, 50.0, 100.0], 1),
        ];
        crate::row::derive_ratios(&mut rows);
        let t = table(&rows);
        // Both rows slowed in the same round: the speed-up holds, the noise is reported.
        assert!(t[1].contains("2.00x") && !t[1].contains('~'), "{t:?}");
        let last = t.last().unwrap();
        assert!(last.starts_with("noisy machine: 2 of 2 rows"), "{last}");
    }
}
