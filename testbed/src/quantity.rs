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

#[cfg(test)]
mod tests {
    use super::*;

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
