//! DNSSEC online signing: ECDSA P-256 with SHA-256 (algorithm 13, RFC 6605).
//!
//! A zone with a `dnssec:` block loads its keys from PEM (PKCS#8) files: one CSK, or
//! a KSK and a ZSK. [`ZoneKeys`] holds them with the DNSKEY, CDS and CDNSKEY RRsets of
//! the apex. [`ZoneKeys::sign`] makes the RRSIG of one RRset (RFC 4034 §3.1.8.1),
//! valid from one hour ago for [`VALIDITY`]; a [`SigCache`] per worker keeps
//! signatures by the RRset's signed bytes, so computed GSLB answers that many client
//! networks share are signed once, and re-signs after [`REFRESH`].
//!
//! Denial of existence is compact (RFC 9824): [`nsec_rdata`] builds the NSEC at the
//! query name whose next name is `\000.<name>` and whose bitmap shows the types there
//! (NXNAME for a name that does not exist).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hickory_proto::rr::rdata::NULL;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

use crate::wire::wire_name;

/// DNSSEC algorithm 13, ECDSAP256SHA256.
pub const ALGORITHM: u8 = 13;
/// Signatures are valid from this long before they are made...
pub const BACKDATE: Duration = Duration::from_secs(3600);
/// ...until this long after.
pub const VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);
/// A signature older than this is made again (and a prepared reply holding it is
/// prepared again).
pub const REFRESH: Duration = Duration::from_secs(24 * 3600);
/// Signatures in one generation of a worker's [`SigCache`]; it holds at most twice
/// this many.
const SIG_CACHE_GENERATION: usize = 32_768;
/// The NXNAME meta-type of RFC 9824 (bit in the NSEC bitmap of a non-existent name).
pub const NXNAME: u16 = 128;

/// Why keys cannot be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file holds no usable key.
    #[error("{path}: {reason}")]
    Bad {
        /// The key file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// ring could not generate a key.
    #[error("cannot generate a key")]
    Generate,
}

/// One signing key.
pub struct Key {
    /// DNSKEY flags: 257 (KSK or CSK) or 256 (ZSK).
    pub flags: u16,
    /// Key tag (RFC 4034 appendix B).
    pub tag: u16,
    /// DNSKEY RDATA.
    pub dnskey: Vec<u8>,
    pair: EcdsaKeyPair,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("flags", &self.flags)
            .field("tag", &self.tag)
            .finish_non_exhaustive()
    }
}

impl Key {
    /// Loads a PEM file holding a PKCS#8 P-256 private key.
    pub fn load(path: &Path, flags: u16) -> Result<Self, KeyError> {
        let pem = std::fs::read(path).map_err(|source| KeyError::Io {
            path: path.to_owned(),
            source,
        })?;
        let bad = |reason: String| KeyError::Bad {
            path: path.to_owned(),
            reason,
        };
        let der = rustls_pemfile::private_key(&mut pem.as_slice())
            .map_err(|e| bad(e.to_string()))?
            .ok_or_else(|| bad("no PRIVATE KEY block".into()))?;
        let pair = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            der.secret_der(),
            &SystemRandom::new(),
        )
        .map_err(|e| bad(format!("not a PKCS#8 ECDSA P-256 key: {e}")))?;
        Ok(Self::from_pair(pair, flags))
    }

    fn from_pair(pair: EcdsaKeyPair, flags: u16) -> Self {
        // The public key is 0x04 || X || Y; DNSKEY holds X || Y (RFC 6605 §4).
        let public = pair.public_key().as_ref().get(1..).unwrap_or_default();
        let mut dnskey = Vec::with_capacity(4 + public.len());
        dnskey.extend_from_slice(&flags.to_be_bytes());
        dnskey.push(3);
        dnskey.push(ALGORITHM);
        dnskey.extend_from_slice(public);
        Self {
            flags,
            tag: key_tag(&dnskey),
            dnskey,
            pair,
        }
    }

    /// The DS RDATA (digest type 2, SHA-256) of this key for `owner`.
    pub fn ds(&self, owner: &Name) -> Vec<u8> {
        let mut data = wire_name(owner).into_vec();
        data.extend_from_slice(&self.dnskey);
        let digest = ring::digest::digest(&ring::digest::SHA256, &data);
        let mut out = Vec::with_capacity(4 + 32);
        out.extend_from_slice(&self.tag.to_be_bytes());
        out.push(ALGORITHM);
        out.push(2);
        out.extend_from_slice(digest.as_ref());
        out
    }
}

/// A new P-256 private key as a PEM PKCS#8 document (`causeway dns keygen`).
pub fn generate_pem() -> Result<String, KeyError> {
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
        .map_err(|_| KeyError::Generate)?;
    let b64 = base64(doc.as_ref());
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    Ok(pem)
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(char::from(T[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// RFC 4034 appendix B.
fn key_tag(rdata: &[u8]) -> u16 {
    let mut ac: u32 = 0;
    for (i, b) in rdata.iter().enumerate() {
        ac += if i & 1 == 1 {
            u32::from(*b)
        } else {
            u32::from(*b) << 8
        };
    }
    ac += (ac >> 16) & 0xffff;
    (ac & 0xffff) as u16
}

/// The keys of one signed zone and its apex key RRsets.
#[derive(Debug)]
pub struct ZoneKeys {
    /// The apex.
    pub origin: Name,
    /// Keys that sign the DNSKEY, CDS and CDNSKEY RRsets (the CSK, or the KSK).
    pub ksk: Key,
    /// The key that signs everything else (the CSK again, or the ZSK).
    pub zsk: Option<Key>,
    /// TTL of DNSKEY, CDS and CDNSKEY.
    pub ttl: u32,
}

impl ZoneKeys {
    /// Loads a CSK (`zsk` None) or a KSK and a ZSK.
    pub fn load(origin: Name, ksk: &Path, zsk: Option<&Path>, ttl: u32) -> Result<Self, KeyError> {
        Ok(Self {
            origin,
            ksk: Key::load(ksk, 257)?,
            zsk: zsk.map(|p| Key::load(p, 256)).transpose()?,
            ttl,
        })
    }

    fn keys(&self) -> impl Iterator<Item = &Key> {
        std::iter::once(&self.ksk).chain(self.zsk.as_ref())
    }

    fn record(&self, rtype: RecordType, rdata: Vec<u8>) -> Record {
        Record::from_rdata(
            self.origin.clone(),
            self.ttl,
            RData::Unknown {
                code: rtype,
                rdata: NULL::with(rdata),
            },
        )
    }

    /// The apex RRsets DNSKEY (every key), CDNSKEY and CDS (the KSK, RFC 7344).
    pub fn apex_rrsets(&self) -> Vec<(RecordType, Vec<Record>)> {
        vec![
            (
                RecordType::DNSKEY,
                self.keys()
                    .map(|k| self.record(RecordType::DNSKEY, k.dnskey.clone()))
                    .collect(),
            ),
            (
                RecordType::CDS,
                vec![self.record(RecordType::CDS, self.ksk.ds(&self.origin))],
            ),
            (
                RecordType::CDNSKEY,
                vec![self.record(RecordType::CDNSKEY, self.ksk.dnskey.clone())],
            ),
        ]
    }

    /// The DS records for the parent, as zone-file text.
    pub fn ds_text(&self) -> String {
        let ds = self.ksk.ds(&self.origin);
        let hex: String = ds[4..].iter().map(|b| format!("{b:02X}")).collect();
        format!(
            "{} {} IN DS {} {} 2 {}\n",
            self.origin, self.ttl, self.ksk.tag, ALGORITHM, hex
        )
    }

    /// The RRSIG over `rrset` (one owner, type and class, non-empty), from `cache`
    /// when it holds a fresh one.
    pub fn sign(&self, rrset: &[Record], cache: &mut SigCache) -> Option<Record> {
        let first = rrset.first()?;
        let rtype = first.record_type();
        let key = match (rtype, &self.zsk) {
            (RecordType::DNSKEY | RecordType::CDS | RecordType::CDNSKEY, _) | (_, None) => {
                &self.ksk
            }
            (_, Some(z)) => z,
        };
        let owner = wire_name(&first.name);
        let labels = first.name.num_labels();
        let ttl = first.ttl;
        // The RRs in canonical form and order (RFC 4034 §6).
        let mut rdatas: Vec<Vec<u8>> = rrset
            .iter()
            .filter_map(|r| {
                let mut buf = Vec::new();
                let mut enc = BinEncoder::new(&mut buf);
                enc.set_canonical_form(true);
                r.data.emit(&mut enc).ok()?;
                Some(buf)
            })
            .collect();
        rdatas.sort();
        rdatas.dedup();
        let mut rrs = Vec::new();
        for rd in &rdatas {
            rrs.extend_from_slice(&owner);
            rrs.extend_from_slice(&u16::from(rtype).to_be_bytes());
            rrs.extend_from_slice(&u16::from(first.dns_class).to_be_bytes());
            rrs.extend_from_slice(&ttl.to_be_bytes());
            rrs.extend_from_slice(&u16::try_from(rd.len()).ok()?.to_be_bytes());
            rrs.extend_from_slice(rd);
        }
        let now = Instant::now();
        if let Some(rdata) = cache.get(key.tag, &rrs, now) {
            return Some(self.rrsig_record(first, rdata));
        }
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        // Serial-number arithmetic (RFC 4034 §3.1.5): the low 32 bits.
        let inception = unix.saturating_sub(BACKDATE.as_secs()) as u32;
        let expiration = unix.saturating_add(VALIDITY.as_secs()) as u32;
        let mut rdata = Vec::with_capacity(18 + self.origin.len() + 2 + 64);
        rdata.extend_from_slice(&u16::from(rtype).to_be_bytes());
        rdata.push(ALGORITHM);
        rdata.push(labels);
        rdata.extend_from_slice(&ttl.to_be_bytes());
        rdata.extend_from_slice(&expiration.to_be_bytes());
        rdata.extend_from_slice(&inception.to_be_bytes());
        rdata.extend_from_slice(&key.tag.to_be_bytes());
        rdata.extend_from_slice(&wire_name(&self.origin));
        let mut data = rdata.clone();
        data.extend_from_slice(&rrs);
        let sig = key.pair.sign(&SystemRandom::new(), &data).ok()?;
        rdata.extend_from_slice(sig.as_ref());
        cache.insert(key.tag, rrs, rdata.clone(), now);
        Some(self.rrsig_record(first, rdata))
    }

    fn rrsig_record(&self, covered: &Record, rdata: Vec<u8>) -> Record {
        let mut r = Record::from_rdata(
            covered.name.clone(),
            covered.ttl,
            RData::Unknown {
                code: RecordType::RRSIG,
                rdata: NULL::with(rdata),
            },
        );
        r.dns_class = covered.dns_class;
        r
    }
}

/// One worker's signatures, keyed by key tag and the RRset's signed bytes.
///
/// Two generations (a cheap approximation of LRU): new signatures go into `young`;
/// when it is full it becomes `old` and the previous `old` is dropped. A hit in `old`
/// moves the entry back to `young`, so signatures in steady use survive while a burst
/// of one-off RRsets only ages out what nobody asked for since.
#[derive(Debug, Default)]
pub struct SigCache {
    young: SigMap,
    old: SigMap,
}

/// Key tag → signed RRset bytes → (RRSIG rdata, when it was made).
type SigMap = HashMap<u16, HashMap<Vec<u8>, (Vec<u8>, Instant)>>;

fn sig_map_len(m: &SigMap) -> usize {
    m.values().map(HashMap::len).sum()
}

impl SigCache {
    /// Number of cached signatures.
    pub fn len(&self) -> usize {
        sig_map_len(&self.young) + sig_map_len(&self.old)
    }

    /// Whether no signature is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A signature made less than [`REFRESH`] ago for `rrs` under `tag`.
    fn get(&mut self, tag: u16, rrs: &[u8], now: Instant) -> Option<Vec<u8>> {
        let fresh = |(rdata, made): &(Vec<u8>, Instant)| {
            (now.duration_since(*made) < REFRESH).then(|| rdata.clone())
        };
        if let Some(hit) = self.young.get(&tag).and_then(|m| m.get(rrs)) {
            return fresh(hit);
        }
        let (bytes, entry) = self.old.get_mut(&tag)?.remove_entry(rrs)?;
        let rdata = fresh(&entry)?;
        self.insert(tag, bytes, entry.0, entry.1);
        Some(rdata)
    }

    fn insert(&mut self, tag: u16, rrs: Vec<u8>, rdata: Vec<u8>, made: Instant) {
        if sig_map_len(&self.young) >= SIG_CACHE_GENERATION {
            self.old = std::mem::take(&mut self.young);
        }
        self.young
            .entry(tag)
            .or_default()
            .insert(rrs, (rdata, made));
    }
}

/// The compact-denial NSEC (RFC 9824) at `owner`: next name `\000.owner`, the
/// bitmap `types` (RRSIG and NSEC are added).
pub fn nsec_record(owner: &Name, ttl: u32, types: &[u16]) -> Record {
    let mut rdata = vec![1, 0];
    rdata.extend_from_slice(&wire_name(owner));
    let mut all: Vec<u16> = types.to_vec();
    all.extend([u16::from(RecordType::RRSIG), u16::from(RecordType::NSEC)]);
    all.sort_unstable();
    all.dedup();
    // Type bitmap (RFC 4034 §4.1.2): per window, length then bits.
    let mut i = 0;
    while i < all.len() {
        let window = (all[i] >> 8) as u8;
        let mut bits = [0u8; 32];
        let mut len = 0;
        while i < all.len() && (all[i] >> 8) as u8 == window {
            let low = (all[i] & 0xff) as usize;
            bits[low / 8] |= 0x80 >> (low % 8);
            len = len.max(low / 8 + 1);
            i += 1;
        }
        rdata.push(window);
        rdata.push(len as u8);
        rdata.extend_from_slice(&bits[..len]);
    }
    Record::from_rdata(
        owner.clone(),
        ttl,
        RData::Unknown {
            code: RecordType::NSEC,
            rdata: NULL::with(rdata),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_tag_and_ds_of_rfc_4034_style_input() {
        // RFC 6605 §6.1 example key (algorithm 13, flags 257): tag 55648.
        let public = [
            0x1a, 0x88, 0xc8, 0x86, 0x15, 0xd4, 0x37, 0xfb, 0xb8, 0xbf, 0x9e, 0x19, 0x42, 0xa1,
            0x92, 0x9f, 0x28, 0x56, 0x27, 0x06, 0xae, 0x6c, 0x2b, 0xd3, 0x99, 0xe7, 0xb1, 0xbf,
            0xb6, 0xd1, 0xe9, 0xe7, 0x5b, 0x92, 0xb4, 0xaa, 0x42, 0x91, 0x7a, 0xe1, 0xc6, 0x1b,
            0x70, 0x1e, 0xf0, 0x35, 0xc3, 0xfe, 0x7b, 0xe3, 0x00, 0x9c, 0xba, 0xfe, 0x5a, 0x2f,
            0x71, 0x31, 0x6c, 0x90, 0x2d, 0xcf, 0x0d, 0x00,
        ];
        let mut rdata = vec![1, 1, 3, 13];
        rdata.extend_from_slice(&public);
        assert_eq!(key_tag(&rdata), 55648);
    }

    #[test]
    fn nsec_bitmap_of_nxname() {
        let owner = Name::from_ascii("x.svc.example.").unwrap();
        let r = nsec_record(&owner, 60, &[NXNAME]);
        let RData::Unknown { rdata, .. } = &r.data else {
            panic!("not raw");
        };
        let bytes = &rdata.anything;
        // next name \000.x.svc.example., then window 0: RRSIG(46), NSEC(47), NXNAME(128)
        let next_len = 2 + wire_name(&owner).len();
        assert_eq!(&bytes[..2], &[1, 0]);
        let bitmap = &bytes[next_len..];
        assert_eq!(bitmap[0], 0);
        assert_eq!(usize::from(bitmap[1]), 17);
        assert_eq!(bitmap[2 + 5], 0b0000_0011); // 46, 47
        assert_eq!(bitmap[2 + 16], 0x80); // 128
    }

    #[test]
    fn pem_round_trip_and_signature_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        std::fs::write(&path, generate_pem().unwrap()).unwrap();
        let origin = Name::from_ascii("svc.example.").unwrap();
        let keys = ZoneKeys::load(origin.clone(), &path, None, 300).unwrap();
        let rr = Record::from_rdata(
            Name::from_ascii("a.svc.example.").unwrap(),
            60,
            RData::A(hickory_proto::rr::rdata::A::new(192, 0, 2, 1)),
        );
        let mut cache = SigCache::default();
        let sig = keys.sign(std::slice::from_ref(&rr), &mut cache).unwrap();
        assert_eq!(cache.len(), 1);
        let again = keys.sign(std::slice::from_ref(&rr), &mut cache).unwrap();
        assert_eq!(sig, again, "the second signature comes from the cache");
        let RData::Unknown { rdata, .. } = &sig.data else {
            panic!("not raw");
        };
        let bytes = &rdata.anything;
        let header_len = 18 + wire_name(&origin).len();
        let mut data = bytes[..header_len].to_vec();
        data.extend_from_slice(
            b"\x01a\x03svc\x07example\x00\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04",
        );
        data.extend_from_slice(&[192, 0, 2, 1]);
        let public = &keys.ksk.dnskey[4..];
        let mut uncompressed = vec![4u8];
        uncompressed.extend_from_slice(public);
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_FIXED,
            uncompressed,
        )
        .verify(&data, &bytes[header_len..])
        .expect("the signature verifies");
        assert!(keys.ds_text().contains(" IN DS "));
    }

    #[test]
    fn sig_cache_keeps_entries_in_use_across_generations() {
        let mut cache = SigCache::default();
        let now = Instant::now();
        let key = |i: usize| i.to_be_bytes().to_vec();
        cache.insert(1, key(0), vec![0], now);
        for i in 1..SIG_CACHE_GENERATION * 5 / 2 {
            cache.insert(1, key(i), vec![1], now);
            if i % 1000 == 0 {
                assert_eq!(cache.get(1, &key(0), now), Some(vec![0]), "in use at {i}");
            }
        }
        assert!(cache.len() <= 2 * SIG_CACHE_GENERATION);
        assert_eq!(cache.get(1, &key(0), now), Some(vec![0]));
        assert_eq!(
            cache.get(1, &key(1), now),
            None,
            "unused since the first generation"
        );
        assert_eq!(cache.get(2, &key(0), now), None, "another key tag");
        let stale = now + REFRESH;
        assert_eq!(cache.get(1, &key(0), stale), None, "older than REFRESH");
    }
}
