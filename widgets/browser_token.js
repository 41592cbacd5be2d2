// Keeps this tab's sign-in token (core/server/sign_ins.py) for the next load of the page, and only for that.
//
// The token stays in this page's memory. Just as the page goes away (a reload, a typed or bookmarked address of
// the app) it is written into a cookie that lives a minute, the next page's connection sends it to the server once,
// and this component, mounted again there, deletes it at once. While the tab is open there is no such cookie, so
// another tab or window cannot pick the sign-in up. Nothing goes into an address. Draws nothing.

const NAME = "liverseg_resume";
const state = (globalThis.__liversegResume ??= { token: null, armed: false });

function write(value, seconds) {
  const secure = location.protocol === "https:" ? "; Secure" : "";
  document.cookie = `${NAME}=${value}; Max-Age=${seconds}; Path=/; SameSite=Strict${secure}`;
}

export default function ({ data }) {
  write("", 0); // the cookie this page was opened with: the server has used it (a token works once)
  state.token = data?.token || null; // none on the login form: a signed-out tab leaves nothing behind
  if (!state.armed) {
    state.armed = true;
    addEventListener("pagehide", () => {
      if (state.token) write(state.token, 60);
    });
  }
}
