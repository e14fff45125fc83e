// The header's "key" button: gives the page an API key or token for a gateway that needs one
// (auth.api_keys, or a custom langgraph_sdk.Auth that reads X-Api-Key), or clears it. Like
// ?apiKey=, the value is kept in this browser's localStorage and sent as X-Api-Key on every
// request; the page reloads with it.
import { storeApiKey } from "./url.js";

export default function KeyButton({ hasKey }) {
  const ask = () => {
    const value = window.prompt("API key or token for this gateway (empty to clear):", "");
    if (value === null) return; // cancelled: keep what is there
    storeApiKey(value.trim());
    window.location.reload();
  };
  return (
    <button
      type="button"
      className="key-button"
      data-testid="api-key"
      data-has-key={hasKey ? "true" : "false"}
      title={hasKey ? "A key is set: click to change or clear it" : "Set an API key or token"}
      onClick={ask}
    >
      {hasKey ? "key ✓" : "key"}
    </button>
  );
}
