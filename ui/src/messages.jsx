export function textOf(content) {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    return content
      .map((part) => (typeof part === "string" ? part : part?.type === "text" ? part.text ?? "" : ""))
      .join("");
  }
  return content == null ? "" : JSON.stringify(content);
}

function formatArgs(args) {
  if (args == null) return "";
  if (typeof args === "string") return args;
  const values = Object.values(args);
  return values.length === 1 && typeof values[0] === "string" ? values[0] : JSON.stringify(args);
}

const LABELS = { human: "You", ai: "Agent", tool: "Tool", system: "System" };

export function Message({ message }) {
  const type = message.type ?? "ai";
  const text = textOf(message.content);
  const toolCalls = type === "ai" && Array.isArray(message.tool_calls) ? message.tool_calls : [];
  return (
    <li
      className={`message message-${type}`}
      data-testid="message"
      data-type={type}
      data-message-id={message.id ?? ""}
    >
      <span className="message-role">{LABELS[type] ?? type}</span>
      {text !== "" && (
        <span className="message-text" data-testid="message-text">
          {type === "tool" && message.name ? `${message.name} → ` : ""}
          {text}
        </span>
      )}
      {toolCalls.map((call, i) => (
        <span className="tool-call" data-testid="tool-call" key={call.id ?? i}>
          calls <code>{call.name}({formatArgs(call.args)})</code>
        </span>
      ))}
    </li>
  );
}
