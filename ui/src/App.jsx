import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { useStream } from "@langchain/langgraph-sdk/react";
import KeyButton from "./KeyButton.jsx";
import { Message } from "./messages.jsx";
import { ThreadList } from "./ThreadList.jsx";
import { readParams, writeParam } from "./url.js";

const ASSISTANTS = ["chat_agent", "approval_agent"];

function errorText(error) {
  if (error == null) return "";
  if (typeof error === "string") return error;
  const name = error.name && error.name !== "Error" ? `${error.name}: ` : "";
  return `${name}${error.message ?? JSON.stringify(error)}`;
}

// The standard human-in-the-loop request (LangChain v1 HumanInTheLoopMiddleware's HITLRequest, what
// Agent Chat UI renders with buttons): {action_requests: [{name, args, description}],
// review_configs: [{action_name, allowed_decisions}]}. Answered with {decisions: [...]}, one per action.
export function isHitlRequest(value) {
  if (!value || typeof value !== "object") return false;
  const { action_requests: actions, review_configs: configs } = value;
  return (
    Array.isArray(actions) &&
    actions.length > 0 &&
    Array.isArray(configs) &&
    configs.length > 0 &&
    actions.every((a) => a && typeof a.name === "string" && a.args !== null && typeof a.args === "object") &&
    configs.every((c) => c && typeof c.action_name === "string" && Array.isArray(c.allowed_decisions))
  );
}

function allowedFor(request, index) {
  const action = request.action_requests[index];
  const config =
    request.review_configs.find((c) => c.action_name === action.name) ?? request.review_configs[index];
  return config?.allowed_decisions ?? [];
}

// One action request: its description and call, and Approve / Edit (args as JSON) / Reject
// (optional message) as its review config allows. `onDecide(decision)` gets a standard decision.
function ActionReview({ action, allowed, disabled, onDecide }) {
  const [mode, setMode] = useState(null); // null | "edit" | "reject"
  const [argsText, setArgsText] = useState(() => JSON.stringify(action.args, null, 2));
  const [argsError, setArgsError] = useState("");
  const [message, setMessage] = useState("");

  const submitEdit = (event) => {
    event.preventDefault();
    let args;
    try {
      args = JSON.parse(argsText);
    } catch (err) {
      setArgsError(`Not JSON: ${err.message}`);
      return;
    }
    if (args === null || typeof args !== "object" || Array.isArray(args)) {
      setArgsError("The args must be a JSON object.");
      return;
    }
    onDecide({ type: "edit", edited_action: { name: action.name, args } });
  };
  const submitReject = (event) => {
    event.preventDefault();
    const text = message.trim();
    onDecide(text ? { type: "reject", message: text } : { type: "reject" });
  };

  return (
    <div className="interrupt-action" data-testid="interrupt-action">
      {action.description && (
        <p className="interrupt-question" data-testid="interrupt-question">
          {action.description}
        </p>
      )}
      <p className="interrupt-call">
        <code data-testid="interrupt-call">
          {action.name}({JSON.stringify(action.args)})
        </code>
      </p>
      {mode === null && (
        <div className="interrupt-actions">
          {allowed.includes("approve") && (
            <button type="button" data-testid="approve" disabled={disabled} onClick={() => onDecide({ type: "approve" })}>
              Approve
            </button>
          )}
          {allowed.includes("edit") && (
            <button type="button" data-testid="edit" disabled={disabled} onClick={() => setMode("edit")}>
              Edit
            </button>
          )}
          {allowed.includes("reject") && (
            <button type="button" data-testid="reject" disabled={disabled} onClick={() => setMode("reject")}>
              Reject
            </button>
          )}
        </div>
      )}
      {mode === "edit" && (
        <form className="interrupt-form" onSubmit={submitEdit}>
          <label>
            Arguments (JSON)
            <textarea
              data-testid="edit-args"
              rows={Math.min(10, argsText.split("\n").length + 1)}
              value={argsText}
              onChange={(e) => {
                setArgsText(e.target.value);
                setArgsError("");
              }}
              autoFocus
            />
          </label>
          {argsError && (
            <p className="interrupt-error" role="alert" data-testid="edit-error">
              {argsError}
            </p>
          )}
          <div className="interrupt-actions">
            <button type="submit" data-testid="edit-submit" disabled={disabled}>
              Run with these args
            </button>
            <button type="button" data-testid="edit-cancel" onClick={() => setMode(null)}>
              Back
            </button>
          </div>
        </form>
      )}
      {mode === "reject" && (
        <form className="interrupt-form" onSubmit={submitReject}>
          <input
            data-testid="reject-message"
            value={message}
            placeholder="Why not? (optional, sent to the agent)"
            onChange={(e) => setMessage(e.target.value)}
            autoFocus
          />
          <div className="interrupt-actions">
            <button type="submit" data-testid="reject-submit" disabled={disabled}>
              Reject
            </button>
            <button type="button" data-testid="reject-cancel" onClick={() => setMode(null)}>
              Back
            </button>
          </div>
        </form>
      )}
    </div>
  );
}

// A standard HITL request: one review per action; resumes with {decisions} once each has one.
function HitlPrompt({ request, disabled, onAnswer }) {
  const count = request.action_requests.length;
  const [decisions, setDecisions] = useState(() => Array(count).fill(null));
  const decide = (index, decision) => {
    const next = decisions.map((d, i) => (i === index ? decision : d));
    setDecisions(next);
    if (next.every((d) => d !== null)) onAnswer({ decisions: next });
  };
  return (
    <section className="interrupt" data-testid="interrupt" data-kind="hitl">
      {count > 1 && <p className="interrupt-note">The agent wants to make {count} calls; decide on each.</p>}
      {request.action_requests.map((action, i) =>
        decisions[i] ? (
          <p className="interrupt-decided" key={i} data-testid="interrupt-decided">
            {action.name}: {decisions[i].type}
          </p>
        ) : (
          <ActionReview
            key={i}
            action={action}
            allowed={allowedFor(request, i)}
            disabled={disabled}
            onDecide={(d) => decide(i, d)}
          />
        ),
      )}
    </section>
  );
}

// Any other interrupt value: show it, answer yes (true) or no (false).
function GenericPrompt({ value, disabled, onAnswer }) {
  const question =
    typeof value === "string" ? value : value?.question ?? "The agent needs your answer.";
  const detail = typeof value === "object" && value !== null && value.question === undefined ? value : null;
  return (
    <section className="interrupt" data-testid="interrupt" data-kind="generic">
      <p className="interrupt-question" data-testid="interrupt-question">
        {question}
      </p>
      {detail && (
        <pre className="interrupt-detail">
          <code>{JSON.stringify(detail, null, 2)}</code>
        </pre>
      )}
      <div className="interrupt-actions">
        <button type="button" data-testid="approve" disabled={disabled} onClick={() => onAnswer(true)}>
          Approve
        </button>
        <button type="button" data-testid="reject" disabled={disabled} onClick={() => onAnswer(false)}>
          Reject
        </button>
      </div>
    </section>
  );
}

function InterruptPrompt({ interrupt, disabled, onAnswer }) {
  const value = interrupt.value;
  return isHitlRequest(value) ? (
    <HitlPrompt request={value} disabled={disabled} onAnswer={onAnswer} />
  ) : (
    <GenericPrompt value={value} disabled={disabled} onAnswer={onAnswer} />
  );
}

export function App() {
  const initial = useMemo(readParams, []);
  const [threadId, setThreadIdState] = useState(initial.thread);
  const [assistantId, setAssistantIdState] = useState(initial.assistant);
  const [runId, setRunId] = useState(null);
  const [input, setInput] = useState("");
  const [refreshKey, setRefreshKey] = useState(0);
  const refreshThreads = useCallback(() => setRefreshKey((k) => k + 1), []);

  const setThreadId = useCallback((id) => {
    setThreadIdState(id);
    writeParam("thread", id);
  }, []);
  const setAssistantId = useCallback((id) => {
    setAssistantIdState(id);
    writeParam("assistant", id === "chat_agent" ? null : id);
  }, []);

  const runConfig = useMemo(() => {
    const delay = Number(initial.delay);
    return initial.delay != null && Number.isFinite(delay) ? { configurable: { delay } } : undefined;
  }, [initial.delay]);

  const stream = useStream({
    apiUrl: initial.apiUrl,
    apiKey: initial.apiKey,
    assistantId,
    threadId,
    onThreadId: setThreadId,
    reconnectOnMount: true,
    onCreated: (run) => setRunId(run.run_id),
    onFinish: refreshThreads,
    onError: refreshThreads,
    // The list shows each thread's status: re-read it once the server has cancelled the run too.
    onStop: () => setTimeout(refreshThreads, 500),
  });

  // A new or switched thread re-reads the list (the first render already reads it).
  const shownThread = useRef(threadId);
  useEffect(() => {
    if (shownThread.current === threadId) return;
    shownThread.current = threadId;
    refreshThreads();
  }, [threadId, refreshThreads]);

  const messages = stream.messages;
  // Only interrupt() calls (they carry a value) get the approval prompt. useStream also reports
  // a bare {when: "breakpoint"} for any thread whose checkpoint has `next` nodes left, e.g. after
  // Stop; sending a new message simply continues such a thread.
  const interrupts = stream.interrupts.filter((i) => i && i.value !== undefined);
  const interrupt = interrupts.length ? interrupts[0] : undefined;
  const busy = stream.isLoading;

  const listEnd = useRef(null);
  useEffect(() => {
    listEnd.current?.scrollIntoView?.({ block: "end" });
  }, [messages]);

  const send = (event) => {
    event.preventDefault();
    const text = input.trim();
    if (!text || busy || interrupt != null) return;
    setInput("");
    setRunId(null);
    stream.submit(
      { messages: [{ type: "human", content: text }] },
      {
        config: runConfig,
        optimisticValues: (prev) => ({
          ...prev,
          messages: [...(prev.messages ?? []), { type: "human", content: text, id: `optimistic-${Date.now()}` }],
        }),
      },
    );
  };

  // `resume` is {decisions: [...]} for a standard HITL request, true/false for any other interrupt.
  const answer = (resume) => {
    setRunId(null);
    stream.submit(undefined, { command: { resume }, config: runConfig });
  };

  const selectThread = (thread) => {
    if (busy) stream.stop();
    const graph = thread.metadata?.graph_id;
    if (graph) setAssistantId(graph);
    setRunId(null);
    setThreadId(thread.thread_id);
  };

  const newThread = () => {
    if (busy) stream.stop();
    setRunId(null);
    setThreadId(null);
  };

  const assistants = ASSISTANTS.includes(assistantId) ? ASSISTANTS : [...ASSISTANTS, assistantId];
  const error = stream.error;

  return (
    <div className="app">
      <ThreadList
        client={stream.client}
        currentId={threadId}
        refreshKey={refreshKey}
        onSelect={selectThread}
        onNew={newThread}
      />
      <main className="chat">
        <header className="chat-head">
          <h1>Gateway chat</h1>
          <label>
            Assistant{" "}
            <select
              data-testid="assistant"
              value={assistantId}
              disabled={busy}
              onChange={(e) => {
                setAssistantId(e.target.value);
                newThread();
              }}
            >
              {assistants.map((a) => (
                <option key={a} value={a}>
                  {a}
                </option>
              ))}
            </select>
          </label>
          <span className="status" data-testid="status" data-loading={busy ? "true" : "false"}>
            {busy ? "running…" : "idle"}
          </span>
          <KeyButton hasKey={Boolean(initial.apiKey)} />
        </header>
        <p className="chat-ids">
          thread <code data-testid="thread-id">{threadId ?? "(none yet)"}</code>
          {runId && (
            <>
              {" · run "}
              <code data-testid="run-id">{runId}</code>
            </>
          )}
        </p>

        <ol className="messages" data-testid="messages">
          {messages.map((m, i) => (
            <Message key={m.id ?? i} message={m} />
          ))}
          <li ref={listEnd} className="messages-end" aria-hidden="true" />
        </ol>

        {interrupt && !busy && (
          <InterruptPrompt key={interrupt.id ?? "interrupt"} interrupt={interrupt} disabled={busy} onAnswer={answer} />
        )}

        {error != null && (
          <p className="error" role="alert" data-testid="error">
            {errorText(error)}
          </p>
        )}

        <form className="composer" onSubmit={send}>
          <input
            data-testid="input"
            value={input}
            placeholder={interrupt && !busy ? "Answer the prompt above first…" : "Ask something, e.g. what is 12*(3+4)?"}
            onChange={(e) => setInput(e.target.value)}
            autoFocus
          />
          <button type="submit" data-testid="send" disabled={busy || (interrupt != null) || input.trim() === ""}>
            Send
          </button>
          <button type="button" data-testid="stop" disabled={!busy} onClick={() => stream.stop()}>
            Stop
          </button>
        </form>
        <footer className="chat-foot">
          gateway <code>{initial.apiUrl}</code>
        </footer>
      </main>
    </div>
  );
}
