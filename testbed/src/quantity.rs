//! Kubernetes resource quantities (`32`, `500m`, `128Gi`), checked before they reach a node.

/// Suffixes the Kubernetes quantity grammar accepts, with their multipliers as powers.
const BINARY_SI: [&str; 6] = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
const DECIMAL_SI: [&str; 8] = ["n", "u", "m", "k", "M", "G", "T", "P"];

/// Checks `value` against the Kubernetes quantity grammar and that it is positive.
///
/// Accepts `<number><suffix>` where number is a decimal (`1`, `1.5`, `.5`) and suffix is
/// empty, a binary SI suffix (`Ki` … `Ei`), a decimal SI suffix (`n u m k M G T P E`) or a
/// decimal exponent (`e3`, `E-2`). Returns a reason that names the accepted forms.
pub fn check_quantity(value: &str) -> Result<(), String> {
    let hint = "use a Kubernetes quantity such as 32, 500m, 128Gi, 512Mi or 64G";
    let v = value.trim();
    if v.is_empty() {
        return Err(format!("empty; {hint}"));
    }
    if v.starts_with('-') {
        return Err(format!("must be positive; {hint}"));
    }
    let v = v.strip_prefix('+').unwrap_or(v);
    let num_len = v
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.'))
        .map_or(v.len(), |(i, _)| i);
    let (num, suffix) = v.split_at(num_len);
    let digits = num.chars().filter(char::is_ascii_digit).count();
    if digits == 0 || num.matches('.').count() > 1 {
        return Err(format!("no number before {suffix:?}; {hint}"));
    }
    let suffix_ok = suffix.is_empty()
        || BINARY_SI.contains(&suffix)
        || DECIMAL_SI.contains(&suffix)
        || suffix == "E"
        || is_exponent(suffix);
    if !suffix_ok {
        return Err(format!("unknown unit {suffix:?}; {hint}"));
    }
    if num.chars().all(|c| c == '0' || c == '.') {
        return Err(format!("must be more than zero; {hint}"));
    }
    Ok(())
}

fn is_exponent(s: &str) -> bool {
    let Some(rest) = s.strip_prefix(['e', 'E']) else {
        return false;
    };
    let rest = rest.strip_prefix(['+', '-']).unwrap_or(rest);
    !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit())
}

/// The value of a quantity in its base unit (cores, bytes): `800m` → 0.8, `799984n` →
/// 0.000799984, `1Gi` → 1073741824. `None` when it is not a quantity. As a float: for
/// reading what metrics.k8s.io reports, not for exact arithmetic.
pub fn parse_quantity(value: &str) -> Option<f64> {
    let v = value.trim();
    let v = v.strip_prefix('+').unwrap_or(v);
    let (negative, v) = match v.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, v),
    };
    let num_len = v
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.'))
        .map_or(v.len(), |(i, _)| i);
    let (num, suffix) = v.split_at(num_len);
    if num.is_empty() || num == "." {
        return None;
    }
    let n: f64 = num.parse().ok()?;
    let scale = if let Some(i) = BINARY_SI.iter().position(|s| *s == suffix) {
        1024f64.powi(i32::try_from(i).ok()? + 1)
    } else if suffix == "E" {
        1e18
    } else if let Some(i) = DECIMAL_SI.iter().position(|s| *s == suffix) {
        // n u m are 10^-9, 10^-6, 10^-3; k M G T P are 10^3 … 10^15.
        let i = i32::try_from(i).ok()?;
        10f64.powi(if i < 3 { 3 * (i - 3) } else { 3 * (i - 2) })
    } else if suffix.is_empty() {
        1.0
    } else if is_exponent(suffix) {
        10f64.powi(suffix[1..].parse().ok()?)
    } else {
        return None;
    };
    let x = n * scale;
    Some(if negative { -x } else { x })
}

/// A CPU quantity in millicores, rounded: `800m` → 800, `799984n` → 1, `2` → 2000.
pub fn cpu_millicores(value: &str) -> Option<u64> {
    let cores = parse_quantity(value)?;
    if cores < 0.0 || !cores.is_finite() {
        return None;
    }
    // Saturating float-to-int cast; millicores of real CPUs fit easily.
    Some((cores * 1000.0).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quantities() {
        assert_eq!(parse_quantity("800m"), Some(0.8));
        assert_eq!(parse_quantity("2"), Some(2.0));
        assert_eq!(parse_quantity("1Gi"), Some(1073741824.0));
        assert_eq!(parse_quantity("1k"), Some(1000.0));
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
        assert_eq!(parse_quantity("5M"), Some(5e6));
        assert_eq!(parse_quantity("lots"), None);
        assert_eq!(parse_quantity("1XB"), None);
        assert_eq!(cpu_millicores("799984123n"), Some(800));
        assert_eq!(cpu_millicores("400m"), Some(400));
        assert_eq!(cpu_millicores("1500u"), Some(2));
        assert_eq!(cpu_millicores("1"), Some(1000));
        assert_eq!(cpu_millicores("-1"), None);
    }

    #[test]
    fn accepts_kubernetes_quantities() {
        for ok in [
            "32", "500m", "0.5", ".5", "128Gi", "512Mi", "64G", "1e3", "2E", "1k", "+4",
        ] {
            assert_eq!(check_quantity(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn rejects_bad_quantities_with_a_reason() {
        for (bad, reason) in [
            ("12XB", "unknown unit \"XB\""),
            ("", "empty"),
            ("Gi", "no number"),
            ("-1", "positive"),
            ("0", "more than zero"),
            ("1.2.3", "no number"),
            ("12 Gi", "unknown unit"),
            ("1gi", "unknown unit"),
            ("1e", "unknown unit"),
        ] {
            let err = check_quantity(bad).unwrap_err();
            assert!(err.contains(reason), "{bad:?}: {err}");
            assert!(err.contains("128Gi"), "hint missing for {bad:?}: {err}");
        }
    }
}
