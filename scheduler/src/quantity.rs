//! Kubernetes resource quantities (`100m`, `2`, `512Mi`, `1.5G`) as integers.

/// CPU in millicores, memory in bytes, pods as a count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Resources {
    /// CPU, millicores.
    pub cpu_millis: u64,
    /// Memory, bytes.
    pub memory_bytes: u64,
    /// Pods.
    pub pods: u64,
}

impl Resources {
    /// `self + other`, saturating.
    pub fn plus(self, other: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_add(other.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_add(other.memory_bytes),
            pods: self.pods.saturating_add(other.pods),
        }
    }

    /// `self - other`, each at least 0.
    pub fn minus(self, other: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_sub(other.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_sub(other.memory_bytes),
            pods: self.pods.saturating_sub(other.pods),
        }
    }

    /// How many copies of `each` fit in `self`. A dimension `each` does not request
    /// does not limit; a pod always counts one against `pods`.
    pub fn fits(self, each: Resources) -> u64 {
        let by = |free: u64, need: u64| free.checked_div(need).unwrap_or(u64::MAX);
        by(self.cpu_millis, each.cpu_millis)
            .min(by(self.memory_bytes, each.memory_bytes))
            .min(by(self.pods, each.pods.max(1)))
    }
}

/// Why a quantity does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid quantity {0:?}")]
pub struct QuantityError(pub String);

/// Parses a quantity into units of `1/scale` (scale 1000 for CPU millicores, 1 for bytes),
/// rounding up as the kubelet does.
pub fn parse(q: &str, scale: u64) -> Result<u64, QuantityError> {
    let err = || QuantityError(q.to_string());
    let s = q.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    if num.is_empty() {
        return Err(err());
    }
    let (mul, div): (u128, u128) = match suffix {
        "" => (1, 1),
        "m" => (1, 1000),
        "u" => (1, 1_000_000),
        "n" => (1, 1_000_000_000),
        "k" => (1_000, 1),
        "M" => (1_000_000, 1),
        "G" => (1_000_000_000, 1),
        "T" => (1_000_000_000_000, 1),
        "Ki" => (1 << 10, 1),
        "Mi" => (1 << 20, 1),
        "Gi" => (1 << 30, 1),
        "Ti" => (1 << 40, 1),
        _ => {
            if let Some(exp) = suffix.strip_prefix(['e', 'E']) {
                let e: u32 = exp.parse().map_err(|_| err())?;
                (10u128.checked_pow(e).ok_or_else(err)?, 1)
            } else {
                return Err(err());
            }
        }
    };
    // Fixed point with 9 decimals keeps `0.1` and `100m` exact.
    let (int, frac) = num
        .trim_start_matches('+')
        .split_once('.')
        .unwrap_or((num, ""));
    if frac.len() > 9 || (int.is_empty() && frac.is_empty()) {
        return Err(err());
    }
    let int: u128 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| err())?
    };
    let frac_val: u128 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().map_err(|_| err())?
    };
    let nanos = int
        .checked_mul(1_000_000_000)
        .and_then(|v| v.checked_add(frac_val))
        .ok_or_else(err)?;
    let scaled = nanos
        .checked_mul(mul)
        .and_then(|v| v.checked_mul(u128::from(scale)))
        .ok_or_else(err)?;
    let denom = div * 1_000_000_000;
    let out = scaled.div_ceil(denom);
    u64::try_from(out).map_err(|_| err())
}

/// CPU quantity in millicores.
pub fn cpu_millis(q: &str) -> Result<u64, QuantityError> {
    parse(q, 1000)
}

/// Memory quantity in bytes.
pub fn bytes(q: &str) -> Result<u64, QuantityError> {
    parse(q, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu() {
        for (q, m) in [
            ("100m", 100),
            ("1", 1000),
            ("0.5", 500),
            ("2.25", 2250),
            ("1500u", 2),
            ("250000000n", 250),
            ("1e3", 1_000_000),
        ] {
            assert_eq!(cpu_millis(q), Ok(m), "{q}");
        }
    }

    #[test]
    fn memory() {
        for (q, b) in [
            ("512Mi", 512 << 20),
            ("1Gi", 1 << 30),
            ("1G", 1_000_000_000),
            ("128974848", 128_974_848),
            ("129e6", 129_000_000),
            ("1.5Ki", 1536),
        ] {
            assert_eq!(bytes(q), Ok(b), "{q}");
        }
    }

    #[test]
    fn junk_is_refused() {
        for q in [
            "",
            "m",
            "1x",
            "-1",
            "1..2",
            "1.0000000001",
            "99999999999999999999999Ti",
            "Mi",
        ] {
            assert!(bytes(q).is_err(), "{q}");
        }
    }

    #[test]
    fn fits() {
        let free = Resources {
            cpu_millis: 1000,
            memory_bytes: 1 << 30,
            pods: 110,
        };
        let each = Resources {
            cpu_millis: 300,
            memory_bytes: 0,
            pods: 1,
        };
        assert_eq!(free.fits(each), 3);
        assert_eq!(
            free.fits(Resources {
                pods: 1,
                ..Default::default()
            }),
            110
        );
    }
}
