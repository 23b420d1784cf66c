//! One certificate authority per cluster, and the certificates its components use.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::TestbedError;
use crate::files::write_private;

/// The first address of the service range; the apiserver's certificate names it.
pub const SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);

/// A certificate and key pair on disk.
#[derive(Clone, Debug)]
pub struct CertFiles {
    /// PEM certificate.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8).
    pub key: PathBuf,
}

/// Every certificate and key of one cluster, written under `<cluster>/pki/`.
#[derive(Clone, Debug)]
pub struct ClusterPki {
    /// The cluster CA certificate (`ca.crt`).
    pub ca_cert: PathBuf,
    /// kube-apiserver serving certificate.
    pub apiserver: CertFiles,
    /// Client certificate of the admin user (`O=system:masters`).
    pub admin: CertFiles,
    /// kube-apiserver's client certificate towards kwok's kubelet server.
    pub kubelet_client: CertFiles,
    /// kube-controller-manager's client certificate.
    pub controller_manager: CertFiles,
    /// kube-scheduler's client certificate.
    pub scheduler: CertFiles,
    /// kwok's client certificate towards the apiserver.
    pub kwok_client: CertFiles,
    /// kwok's kubelet-like serving certificate.
    pub kwok_serving: CertFiles,
    /// ServiceAccount token signing key (private, PKCS#8).
    pub sa_key: PathBuf,
    /// ServiceAccount token verification key (public).
    pub sa_pub: PathBuf,
    /// CA of the aggregation layer's front proxy (`front-proxy-ca.crt`), separate from the
    /// cluster CA: extension API servers (metrics-server) trust the `X-Remote-User` headers
    /// of a client certificate it signed.
    pub front_proxy_ca: PathBuf,
    /// kube-apiserver's client certificate towards extension API servers
    /// (`CN=front-proxy-client`, signed by the front-proxy CA).
    pub front_proxy_client: CertFiles,
    /// metrics-server's serving certificate: the cluster's address and
    /// `metrics-server.kube-system.svc`, the name the aggregator checks.
    pub metrics_server_serving: CertFiles,
    /// metrics-server's client certificate (`CN=system:metrics-server`, rights from RBAC).
    pub metrics_server_client: CertFiles,
}

/// CN of the front proxy's client certificate (`--requestheader-allowed-names`).
pub const FRONT_PROXY_CLIENT_CN: &str = "front-proxy-client";
/// User name of metrics-server's client certificate.
pub const METRICS_SERVER_USER: &str = "system:metrics-server";
/// DNS name of the metrics-server Service, which the aggregator expects in its certificate.
pub const METRICS_SERVER_DNS: &str = "metrics-server.kube-system.svc";

/// What a leaf certificate is for.
enum Usage {
    Server(Vec<SanType>),
    Client {
        cn: String,
        org: Option<&'static str>,
    },
}

impl ClusterPki {
    /// Makes a fresh CA and all certificates for `cluster` at `address` in `dir`.
    pub fn generate(dir: &Path, cluster: &str, address: Ipv4Addr) -> Result<Self, TestbedError> {
        let err = |reason: rcgen::Error| TestbedError::Pki {
            cluster: cluster.to_owned(),
            reason: reason.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(TestbedError::io("create directory", dir))?;

        let make_ca =
            |file: &str, cn: &str| -> Result<(PathBuf, Issuer<'static, KeyPair>), TestbedError> {
                let mut params = CertificateParams::default();
                params.distinguished_name = dn(cn, None);
                params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
                params.key_usages = vec![
                    KeyUsagePurpose::KeyCertSign,
                    KeyUsagePurpose::CrlSign,
                    KeyUsagePurpose::DigitalSignature,
                ];
                let key = KeyPair::generate().map_err(err)?;
                let cert = params.self_signed(&key).map_err(err)?;
                let path = dir.join(format!("{file}.crt"));
                write_private(&path, cert.pem().as_bytes())?;
                write_private(
                    &dir.join(format!("{file}.key")),
                    key.serialize_pem().as_bytes(),
                )?;
                Ok((path, Issuer::new(params, key)))
            };
        let (ca_cert_path, issuer) = make_ca("ca", &format!("causeway-testbed-{cluster}-ca"))?;
        let (front_proxy_ca, front_proxy_issuer) = make_ca(
            "front-proxy-ca",
            &format!("causeway-testbed-{cluster}-front-proxy-ca"),
        )?;

        let ip = SanType::IpAddress(IpAddr::V4(address));
        let mut apiserver_sans = vec![ip.clone(), SanType::IpAddress(IpAddr::V4(SERVICE_IP))];
        for name in [
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            "localhost",
        ] {
            apiserver_sans.push(SanType::DnsName(name.try_into().map_err(err)?));
        }
        let signed = |issuer: &Issuer<'static, KeyPair>,
                      name: &str,
                      usage: Usage|
         -> Result<CertFiles, TestbedError> {
            let mut params = CertificateParams::default();
            match usage {
                Usage::Server(sans) => {
                    params.distinguished_name = dn(name, None);
                    params.subject_alt_names = sans;
                    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
                }
                Usage::Client { cn, org } => {
                    params.distinguished_name = dn(&cn, org);
                    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
                }
            }
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.use_authority_key_identifier_extension = true;
            let key = KeyPair::generate().map_err(err)?;
            let cert = params.signed_by(&key, issuer).map_err(err)?;
            let files = CertFiles {
                cert: dir.join(format!("{name}.crt")),
                key: dir.join(format!("{name}.key")),
            };
            write_private(&files.cert, cert.pem().as_bytes())?;
            write_private(&files.key, key.serialize_pem().as_bytes())?;
            Ok(files)
        };
        let leaf = |name: &str, usage: Usage| signed(&issuer, name, usage);
        let client = |cn: &str, org| Usage::Client {
            cn: cn.to_owned(),
            org,
        };

        let sa = KeyPair::generate().map_err(err)?;
        let sa_key = dir.join("sa.key");
        let sa_pub = dir.join("sa.pub");
        write_private(&sa_key, sa.serialize_pem().as_bytes())?;
        write_private(&sa_pub, sa.public_key_pem().as_bytes())?;

        Ok(Self {
            ca_cert: ca_cert_path,
            apiserver: leaf("apiserver", Usage::Server(apiserver_sans))?,
            admin: leaf("admin", client("causeway-admin", Some("system:masters")))?,
            kubelet_client: leaf(
                "apiserver-kubelet-client",
                client("kube-apiserver-kubelet-client", Some("system:masters")),
            )?,
            controller_manager: leaf(
                "controller-manager",
                client("system:kube-controller-manager", None),
            )?,
            scheduler: leaf("scheduler", client("system:kube-scheduler", None))?,
            kwok_client: leaf(
                "kwok-client",
                client("kwok-controller", Some("system:masters")),
            )?,
            kwok_serving: leaf("kwok-serving", Usage::Server(vec![ip.clone()]))?,
            sa_key,
            sa_pub,
            front_proxy_client: signed(
                &front_proxy_issuer,
                "front-proxy-client",
                client(FRONT_PROXY_CLIENT_CN, None),
            )?,
            front_proxy_ca,
            metrics_server_serving: leaf(
                "metrics-server",
                Usage::Server(vec![
                    ip,
                    SanType::DnsName(METRICS_SERVER_DNS.try_into().map_err(err)?),
                ]),
            )?,
            metrics_server_client: leaf(
                "metrics-server-client",
                client(METRICS_SERVER_USER, None),
            )?,
        })
    }
}

fn dn(cn: &str, org: Option<&str>) -> rcgen::DistinguishedName {
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    if let Some(org) = org {
        dn.push(DnType::OrganizationName, org);
    }
    dn
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_every_file() {
        let dir = tempfile::tempdir().unwrap();
        let pki = ClusterPki::generate(dir.path(), "a", Ipv4Addr::new(127, 0, 0, 10)).unwrap();
        for p in [
            &pki.ca_cert,
            &pki.admin.cert,
            &pki.admin.key,
            &pki.sa_key,
            &pki.sa_pub,
        ] {
            let text = std::fs::read_to_string(p).unwrap();
            assert!(text.starts_with("-----BEGIN"), "{}", p.display());
        }
        let ca = std::fs::read_to_string(&pki.ca_cert).unwrap();
        let admin = std::fs::read_to_string(&pki.admin.cert).unwrap();
        assert_ne!(ca, admin);
    }
}
