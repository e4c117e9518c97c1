// A hostile function for the gateway's tests: its response tries to take over the client connection
// (framing and hop-by-hop headers, impossible statuses, header injection). The request body chooses the case;
// with Envoy's envelope the body arrives in `event.body` (base64 unless the content type is text).
const instructions = (event) => {
  if (event && typeof event.body === "string") {
    const raw = event.is_base64_encoded || event.isBase64Encoded
      ? Buffer.from(event.body, "base64").toString("utf8")
      : event.body;
    try { return JSON.parse(raw); } catch { return {}; }
  }
  return event || {};
};

export const handler = async (event) => {
  const want = instructions(event);
  switch (want.case) {
    case "framing":
      return {
        statusCode: 200,
        headers: {
          "content-length": "1",
          "transfer-encoding": "chunked",
          connection: "close",
          "keep-alive": "timeout=1",
          upgrade: "h2c",
          "proxy-authenticate": "Basic",
          "x-ok": "kept",
        },
        body: "a body longer than one byte",
      };
    case "status":
      return { statusCode: want.status, body: "x" };
    case "bad-headers":
      return {
        statusCode: 200,
        headers: { "bad header": "x", "x-injected": "a\r\nset-cookie: injected=1", "x-ok": "kept" },
        body: "ok",
      };
    case "no-content":
      return { statusCode: 204, body: "must not be sent" };
    default:
      return { statusCode: 200, body: "default" };
  }
};
