// Always throws: the gateway must map X-Amz-Function-Error to 502 with the function's error JSON.
export const handler = async () => {
  throw new Error("deliberate failure from the fail function");
};
