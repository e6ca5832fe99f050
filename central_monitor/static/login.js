// Login: exchange username/password for a token; the hub sets it as an HttpOnly cookie too.
"use strict";
document.getElementById("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const err = document.getElementById("login-error");
  err.hidden = true;
  const body = {
    username: document.getElementById("username").value.trim(),
    password: document.getElementById("password").value,
  };
  try {
    const r = await fetch("/api/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      credentials: "same-origin",
    });
    if (!r.ok) {
      err.textContent = r.status === 401 ? "用户名或密码错误 · Wrong username or password" : `登录失败 · Login failed (${r.status})`;
      err.hidden = false;
      return;
    }
    const data = await r.json();
    sessionStorage.setItem("efence_user", JSON.stringify({ username: data.username, role: data.role }));
    location.href = "/";
  } catch (e) {
    err.textContent = "无法连接平台 · Hub unreachable";
    err.hidden = false;
  }
});
