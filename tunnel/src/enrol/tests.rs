use std::convert::Infallible;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::net::TcpListener;

use super::*;

fn cluster(s: &str) -> ClusterId {
    ClusterId::new(s).unwrap()
}

fn setup() -> (tempfile::TempDir, StateDir, Arc<Ca>) {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::open(dir.path()).unwrap();
    let ca = Arc::new(Ca::load_or_create(dir.path()).unwrap());
    (dir, state, ca)
}

fn csr() -> (KeyPair, String) {
    let key = KeyPair::generate().unwrap();
    let csr = CertificateParams::default()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    (key, csr)
}

fn body(cluster: &str, token: &str, csr: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"cluster": cluster, "token": token, "csr": csr}))
        .unwrap()
}

#[tokio::test]
async fn tokens_work_once_for_their_cluster_until_they_expire() {
    let (_d, state, ca) = setup();
    let enroller = Enroller::new(state.clone(), ca.clone(), Duration::from_secs(3600));
    let t = create_join_token(&state, &cluster("idc-bj"), Duration::from_secs(600)).unwrap();
    assert!(t.token.expose().starts_with(TOKEN_PREFIX));
    assert_eq!(format!("{:?}", t.token), "MASKED");
    // Only the hash is stored.
    let stored = std::fs::read_to_string(state.file(JOIN_TOKENS_FILE)).unwrap();
    assert!(!stored.contains(t.token.expose()));
    let (_k, csr) = csr();

    // Another cluster's claim with this token is refused and does not consume it.
    let err = enroller
        .enrol(&body("idc-sh", t.token.expose(), &csr))
        .await
        .unwrap_err();
    assert!(matches!(err, EnrolError::WrongCluster(_)), "{err}");
    assert_eq!(err.status(), StatusCode::FORBIDDEN);

    let ok = enroller
        .enrol(&body("idc-bj", t.token.expose(), &csr))
        .await
        .unwrap();
    assert_eq!(ok.cluster, cluster("idc-bj"));
    assert_eq!(ok.ca, ca.cert_pem());
    let der = parse_cert_pem(&ok.certificate).unwrap().remove(0);
    assert_eq!(agent_cluster_from_cert(&der).unwrap(), cluster("idc-bj"));
    let known = known_clusters(&state).unwrap();
    assert_eq!(known.len(), 1);
    assert_eq!(known[0].agent_serials.len(), 1);

    let err = enroller
        .enrol(&body("idc-bj", t.token.expose(), &csr))
        .await
        .unwrap_err();
    assert!(matches!(err, EnrolError::TokenUsed(_)), "{err}");
    assert_eq!(err.status(), StatusCode::FORBIDDEN);

    let err = enroller
        .enrol(&body("idc-bj", "cwj_nope", &csr))
        .await
        .unwrap_err();
    assert!(matches!(err, EnrolError::InvalidToken));
    assert_eq!(err.status(), StatusCode::UNAUTHORIZED);

    // Expiry is stored to the second, so a 1 ms token is already expired.
    let short = create_join_token(&state, &cluster("idc-bj"), Duration::from_millis(1)).unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let err = enroller
        .enrol(&body("idc-bj", short.token.expose(), &csr))
        .await
        .unwrap_err();
    assert!(matches!(err, EnrolError::TokenExpired(_)), "{err}");
    assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn bad_requests_get_a_status_body() {
    let (_d, state, ca) = setup();
    let enroller = Enroller::new(state.clone(), ca, Duration::from_secs(3600));
    let t = create_join_token(&state, &cluster("a"), Duration::from_secs(600)).unwrap();
    let big = vec![b' '; MAX_REQUEST_BYTES + 1];
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (b"not json".to_vec(), 400),
        (big, 400),
        (body("A/B", t.token.expose(), "x"), 400),
        (body("a", t.token.expose(), "not a csr"), 400),
        (
            serde_json::to_vec(
                &serde_json::json!({"cluster":"a","token":"t","csr":"c","admin":true}),
            )
            .unwrap(),
            400,
        ),
        (body("a", "wrong", "x"), 401),
    ];
    for (b, code) in cases {
        let resp = enroller.handle(&b).await;
        assert_eq!(resp.status().as_u16(), code);
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["kind"], "Status");
        assert_eq!(v["code"], code);
    }
    // A failed CSR must not consume the token.
    let (_k, csr) = csr();
    let resp = enroller.handle(&body("a", t.token.expose(), &csr)).await;
    assert_eq!(resp.status(), StatusCode::OK);
}

/// Serves `Enroller::handle` on 127.0.0.1 over real TLS (the agent listener config,
/// client certificate optional) and returns its URL.
async fn serve(ca: Arc<Ca>, state: StateDir) -> String {
    let server = ca
        .issue_server(&["127.0.0.1".into()], Duration::from_secs(3600))
        .unwrap();
    let tls = Arc::new(ca.agent_server_config(&server, false).unwrap());
    let enroller = Arc::new(Enroller::new(state, ca, Duration::from_secs(3600)));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let tls = tls.clone();
            let enroller = enroller.clone();
            tokio::spawn(async move {
                let Ok(stream) = tokio_rustls::TlsAcceptor::from(tls).accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let enroller = enroller.clone();
                    async move {
                        let path_ok = req.uri().path() == ENROL_PATH;
                        let b = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let resp = if path_ok {
                            enroller.handle(&b).await
                        } else {
                            status_response(StatusCode::NOT_FOUND, "NotFound", "no such route")
                        };
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    format!("https://{addr}")
}

#[tokio::test]
async fn agent_enrols_over_tls_with_a_pinned_ca() {
    let (_d, state, ca) = setup();
    let url = serve(ca.clone(), state.clone()).await;
    let agent_dir = tempfile::tempdir().unwrap();
    let t = create_join_token(&state, &cluster("idc-bj"), Duration::from_secs(600)).unwrap();

    // A wrong pin: the agent refuses the stub before sending the token.
    let other = Ca::generate().unwrap();
    let err = enrol_agent(
        &url,
        &cluster("idc-bj"),
        &t.token,
        &other.pin(),
        agent_dir.path(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, EnrolError::Transport { .. }), "{err}");
    assert!(AgentCredentials::load(agent_dir.path()).unwrap().is_none());

    let creds = enrol_agent(
        &url,
        &cluster("idc-bj"),
        &t.token,
        &ca.pin(),
        agent_dir.path(),
    )
    .await
    .unwrap();
    assert_eq!(creds.cluster, cluster("idc-bj"));
    let loaded = AgentCredentials::load(agent_dir.path()).unwrap().unwrap();
    assert_eq!(loaded.cert_pem, creds.cert_pem);
    assert_eq!(loaded.cluster, cluster("idc-bj"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(agent_dir.path().join(AGENT_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // The stored credentials build a client config that trusts the stub CA.
    loaded.client_config().unwrap();

    // The token is spent: a second enrolment is refused with the stub's message.
    let err = enrol_agent(
        &url,
        &cluster("idc-bj"),
        &t.token,
        &ca.pin(),
        agent_dir.path(),
    )
    .await
    .unwrap_err();
    match err {
        EnrolError::Refused { code, message } => {
            assert_eq!(code, 403);
            assert!(message.contains("already used"), "{message}");
        }
        other => panic!("{other}"),
    }
    // The token for idc-bj does not enrol idc-sh.
    let t2 = create_join_token(&state, &cluster("idc-bj"), Duration::from_secs(600)).unwrap();
    let err = enrol_agent(
        &url,
        &cluster("idc-sh"),
        &t2.token,
        &ca.pin(),
        agent_dir.path(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, EnrolError::Refused { code: 403, .. }),
        "{err}"
    );
    assert!(
        enrol_agent(
            "http://127.0.0.1:1",
            &cluster("a"),
            &t2.token,
            &ca.pin(),
            agent_dir.path()
        )
        .await
        .is_err()
    );
}

#[tokio::test]
async fn sessions_accept_only_enrolled_agent_certificates_of_their_cluster() {
    let (_d, state, ca) = setup();
    let enroller = Enroller::new(state.clone(), ca.clone(), Duration::from_secs(3600));
    let t = create_join_token(&state, &cluster("idc-bj"), Duration::from_secs(600)).unwrap();
    create_join_token(&state, &cluster("idc-sh"), Duration::from_secs(600)).unwrap();
    let (_k, csr) = csr();
    let ok = enroller
        .enrol(&body("idc-bj", t.token.expose(), &csr))
        .await
        .unwrap();
    let cert = parse_cert_pem(&ok.certificate).unwrap().remove(0);
    assert!(is_enrolled(&state, &cluster("idc-bj")));
    assert!(!is_enrolled(&state, &cluster("aws-sg")));
    assert_eq!(check_agent_cert(&state, &cert, &cluster("idc-bj")), Ok(()));
    // Never as another cluster, even an enrolled one.
    assert!(check_agent_cert(&state, &cert, &cluster("idc-sh")).is_err());
    // A certificate minted with the CA key but not through enrolment.
    let stray = ca
        .issue_agent(&cluster("idc-bj"), Duration::from_secs(60))
        .unwrap();
    let stray = parse_cert_pem(&stray.cert_pem).unwrap().remove(0);
    assert!(check_agent_cert(&state, &stray, &cluster("idc-bj")).is_err());
    // Removing the cluster refuses its agents and kills its tokens.
    assert!(remove_cluster(&state, &cluster("idc-bj")).unwrap());
    assert!(check_agent_cert(&state, &cert, &cluster("idc-bj")).is_err());
    assert!(!remove_cluster(&state, &cluster("idc-bj")).unwrap());
}

#[test]
fn concurrent_updates_from_many_handles_are_never_lost() {
    // Each thread opens its own StateDir (its own lock descriptor), as separate
    // processes would; without the state lock, read-modify-write races lose tokens.
    let dir = tempfile::tempdir().unwrap();
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let path = dir.path().to_owned();
            std::thread::spawn(move || {
                let state = StateDir::open(path).unwrap();
                for j in 0..5 {
                    let cluster = ClusterId::new(format!("c{i}-{j}")).unwrap();
                    create_join_token(&state, &cluster, Duration::from_secs(600)).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let state = StateDir::open(dir.path()).unwrap();
    let tokens: JoinTokensFile = state.read_yaml(JOIN_TOKENS_FILE).unwrap();
    assert_eq!(tokens.tokens.len(), 40);
    assert_eq!(known_clusters(&state).unwrap().len(), 40);
}
