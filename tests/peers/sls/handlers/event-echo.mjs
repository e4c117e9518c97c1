// Returns the event it received, untouched: lets tests see exactly what the gateway sent.
export const handler = async (event) => event;
