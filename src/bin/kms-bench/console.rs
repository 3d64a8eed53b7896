//! `kms-bench console`: the console's pages, signed in with the target's access key.

use super::*;

/// GET `path` of the console with `cookie` on `c`: the status and the body.
async fn get_page(
    c: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    host: &str,
    path: &str,
    cookie: &str,
) -> Result<(u16, Bytes), String> {
    let req = http::Request::builder()
        .uri(format!("http://{host}{path}"))
        .header("host", host)
        .header("cookie", cookie)
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    c.ready().await.map_err(|e| e.to_string())?;
    let resp = c.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok((status, body.to_bytes()))
}

/// The console's pages with the target holding `keys` keys: the inventory's first page, a page
/// in the middle, a search that matches nothing (the most a filtered page scans), a key's page.
pub(super) async fn console_pages(
    t: Target,
    common: Common,
    console: String,
    keys: usize,
    samples: usize,
) -> Result<(), String> {
    create_keys(&t, keys).await?;
    // Every key there is (ListKeys, 1,000 a page).
    let mut made = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let mut req = json!({ "Limit": 1000 });
        if let Some(m) = &marker {
            req["Marker"] = json!(m);
        }
        let page = once(&t, "ListKeys", req).await?;
        for k in page["Keys"].as_array().into_iter().flatten() {
            made.push(k["KeyId"].as_str().unwrap_or_default().to_string());
        }
        match page["NextMarker"].as_str() {
            Some(m) if page["Truncated"].as_bool() == Some(true) => marker = Some(m.to_string()),
            _ => break,
        }
    }
    let Conn { send: mut c, host } = Conn::open(&console).await?;
    let form = format!(
        "access_key_id={}&secret_access_key={}",
        t.access_key_id,
        t.secret_access_key
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D")
    );
    let req = http::Request::builder()
        .method("POST")
        .uri(format!("http://{host}/console/sign-in"))
        .header("host", &host)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(form)))
        .map_err(|e| e.to_string())?;
    c.ready().await.map_err(|e| e.to_string())?;
    let resp = c.send_request(req).await.map_err(|e| e.to_string())?;
    let cookie = resp
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .ok_or("the console refused the sign-in")?
        .to_string();
    let _ = resp.into_body().collect().await;
    let middle = made.get(made.len() / 2).cloned().unwrap_or_default();
    let key = made.first().cloned().unwrap_or_default();
    let pages = [
        ("console: keys, first page", "/console/keys".to_string()),
        (
            "console: keys, a middle page",
            format!("/console/keys?marker={middle}"),
        ),
        (
            "console: keys, a search matching none",
            "/console/keys?q=no-such-key-text".to_string(),
        ),
        ("console: a key's page", format!("/console/keys/{key}")),
    ];
    for (case, path) in pages {
        let mut lat = Vec::with_capacity(samples);
        let mut errors = 0;
        let started = Instant::now();
        for _ in 0..samples {
            let at = Instant::now();
            match get_page(&mut c, &host, &path, &cookie).await {
                Ok((200, _)) => lat.push(at.elapsed().as_micros() as u32),
                _ => errors += 1,
            }
        }
        let s = Stats::of(lat, errors, started.elapsed().as_secs_f64());
        record(&common, case, 1, &s, json!({ "keys": made.len() }));
    }
    Ok(())
}
