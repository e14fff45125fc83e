// The page's state that must survive a reload lives in the query string:
//   ?thread=<thread id>   the open thread (set as soon as the gateway creates it)
//   ?assistant=<graph>    chat_agent (default), approval_agent, or any graph id the gateway serves
//   ?delay=<seconds>      passed to runs as config.configurable.delay (slow test graphs)
//   ?apiUrl=<url>         the gateway (default: the page's own origin, which serves /ui;
//                         under `npm run dev`, http://127.0.0.1:8123)
//   ?apiKey=<key>         for a gateway with `auth.api_keys` or custom auth: kept in this
//                         browser's localStorage and removed from the address bar (links do not
//                         carry it); the header's "key" button (KeyButton.jsx) sets it too

export function readParams() {
  const params = new URLSearchParams(window.location.search);
  return {
    apiUrl: (params.get("apiUrl") || (import.meta.env.DEV ? "http://127.0.0.1:8123" : window.location.origin)).replace(
      /\/+$/,
      "",
    ),
    thread: params.get("thread") || null,
    assistant: params.get("assistant") || "chat_agent",
    delay: params.get("delay"),
    apiKey: readApiKey(params),
  };
}

const API_KEY = "gatewayApiKey";

function readApiKey(params) {
  const given = params.get("apiKey");
  try {
    if (given) window.localStorage.setItem(API_KEY, given);
    return given || window.localStorage.getItem(API_KEY) || undefined;
  } catch {
    return given || undefined; // storage disabled: the key lives as long as the page
  } finally {
    if (given) writeParam("apiKey", null);
  }
}

/** Keep `value` as this browser's key for the gateway (an empty value clears it). */
export function storeApiKey(value) {
  try {
    if (value) window.localStorage.setItem(API_KEY, value);
    else window.localStorage.removeItem(API_KEY);
  } catch {
    // storage disabled: nothing can be kept across the reload
  }
}

export function writeParam(key, value) {
  const url = new URL(window.location.href);
  if (value == null || value === "") url.searchParams.delete(key);
  else url.searchParams.set(key, value);
  if (url.href !== window.location.href) window.history.replaceState(null, "", url);
}
