/** `xhr2` (XMLHttpRequest for Node, used by the dicomweb-client tests) ships no types. */
declare module 'xhr2' {
  const XMLHttpRequest: unknown;
  export default XMLHttpRequest;
}
