// Answers after `event.sleepMs` milliseconds (default 3000): for route timeouts and reloads with requests in flight.
export const handler = async (event) => {
  const ms = Number(event?.sleepMs ?? 3000);
  await new Promise((resolve) => setTimeout(resolve, ms));
  return { statusCode: 200, body: `slept ${ms} ms` };
};
