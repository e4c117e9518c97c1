// An API-Gateway-style responder. The event (a JSON object) chooses the response shape, so one function covers
// statusCode/headers/multiValueHeaders/cookies/isBase64Encoded and the v2 inference cases. With an API Gateway
// request event, the instructions are read from the JSON request body.
const instructions = (event) => {
  if (event && typeof event.body === "string") {
    const raw = event.isBase64Encoded ? Buffer.from(event.body, "base64").toString("utf8") : event.body;
    try { return JSON.parse(raw); } catch { return {}; }
  }
  return event || {};
};

export const handler = async (event) => {
  const want = instructions(event);
  switch (want.shape) {
    case "bare-string":
      return "just a string";
    case "no-status":
      return { message: "no statusCode here", path: event.rawPath ?? event.path ?? null };
    case "binary":
      return {
        statusCode: 200,
        headers: { "content-type": "application/octet-stream" },
        body: Buffer.from([0, 1, 2, 253, 254, 255]).toString("base64"),
        isBase64Encoded: true,
      };
    default:
      return {
        statusCode: want.statusCode ?? 201,
        headers: { "content-type": "text/plain", "x-custom": "one" },
        multiValueHeaders: { "x-multi": ["a", "b"] },
        cookies: ["session=abc; Path=/", "theme=dark"],
        body: `method=${event.httpMethod ?? event.requestContext?.http?.method ?? event.method ?? "?"}`,
        isBase64Encoded: false,
      };
  }
};
