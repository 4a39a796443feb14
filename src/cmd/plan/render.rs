//! The forecast as text, for the terminal.

use std::fmt::Write as _;

use super::forecast::*;

/// The forecast as text: a small table like `report`'s, then the codes, the caps and the time.
pub(super) fn render(f: &Forecast) -> String {
    let mut s = String::new();
    let pool = f.pool.as_deref().map_or_else(
        || "pool not read".to_owned(),
        |p| format!("pool {p} ({} AdminGetUser)", f.plan_pool_reads),
    );
    let _ = writeln!(
        s,
        "plan: {} rows from {}; {pool}; ledger {}; nothing sent",
        f.rows, f.input, f.ledger
    );
    let _ = writeln!(s);
    let _ = writeln!(s, "{:<44}{:>10}{:>8}", "expected outcome", "jobs", "%");
    let total = f.jobs.total();
    let pct = |n: u64| {
        if total == 0 {
            String::new()
        } else {
            format!("{:.1}", n as f64 * 100.0 / total as f64)
        }
    };
    let j = &f.jobs;
    for (name, n) in [
        ("would send", j.would_send),
        ("already_confirmed", j.already_confirmed),
        ("not_found", j.not_found),
        ("cooldown", j.cooldown),
        ("capped", j.capped),
        ("known_confirmed", j.known_confirmed),
        ("known_missing", j.known_missing),
        ("aliases merged (the run: cooldown)", j.aliases_merged),
        (
            "case variants merged (the run: cooldown)",
            j.case_variants_merged,
        ),
        ("duplicates merged (the run: cooldown)", j.duplicates_merged),
        ("invalid", j.invalid),
        ("pool read failed", j.pool_read_failed),
    ] {
        if n > 0 || matches!(name, "would send" | "cooldown" | "invalid") {
            let _ = writeln!(s, "{name:<44}{n:>10}{:>8}", pct(n));
        }
    }
    let _ = writeln!(s, "{:<44}{total:>10}", "total");
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "codes by medium: SMS {}, EMAIL {}, unknown {}",
        f.codes.sms, f.codes.email, f.codes.unknown
    );
    let _ = writeln!(
        s,
        "calls: {} ResendConfirmationCode, {} AdminGetUser",
        f.calls, f.run_pool_reads
    );
    let rate = match f.rate.from {
        "quota" => format!(
            "{}/s (--rate 0: the lowest default quota of Cognito's user-operation categories, \
             shared with the account's other callers in the Region; the run may find more)",
            f.rate.per_second
        ),
        from => format!("{}/s ({from})", f.rate.per_second),
    };
    if f.limits.is_empty() {
        let _ = writeln!(s, "spend caps: none");
    } else {
        let _ = writeln!(s, "spend caps:");
        for l in &f.limits {
            let spent = l
                .spent_today
                .map(|n| format!(", {n} spent today"))
                .unwrap_or_default();
            let reached = match l.reached_after_codes {
                Some(n) => format!("reached after {n} codes"),
                None => "not reached".to_owned(),
            };
            let _ = writeln!(s, "  {}: {}{spent}: {reached}", l.setting, l.limit);
        }
    }
    match &f.stop {
        Some(stop) => {
            let _ = writeln!(
                s,
                "stops at {} after {} codes ({} calls, {} rows), {} at {rate}; {} codes not sent \
                 (exit 4)",
                stop.setting,
                stop.after_codes,
                stop.after_calls,
                stop.after_rows,
                duration(stop.after_seconds),
                f.codes.total() - stop.after_codes
            );
        }
        None => {
            let _ = writeln!(s, "no spend cap stops the run");
            let _ = writeln!(s, "wall time: {} at {rate}", duration(f.wall_seconds));
        }
    }
    if let Some(cost) = &f.sms_cost {
        let _ = writeln!(
            s,
            "SMS cost: {} SMS at ${} = ${:.2}{}",
            f.codes.sms,
            cost.price_usd,
            cost.total_usd,
            if f.stop.is_some() {
                format!(" (${:.2} before the stop)", cost.until_stop_usd)
            } else {
                String::new()
            }
        );
    }
    for note in &f.notes {
        let _ = writeln!(s, "note: {note}");
    }
    s
}

/// Seconds as a person reads them: `42.0 s`, `3 min 20 s`, `2 h 5 min`.
pub(super) fn duration(seconds: f64) -> String {
    if seconds < 60.0 {
        return format!("{seconds:.1} s");
    }
    let whole = seconds.round() as u64;
    let (h, m, s) = (whole / 3600, whole % 3600 / 60, whole % 60);
    if h > 0 {
        format!("{h} h {m} min")
    } else {
        format!("{m} min {s} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration(4.25), "4.2 s");
        assert_eq!(duration(200.0), "3 min 20 s");
        assert_eq!(duration(7_500.0), "2 h 5 min");
    }
}
