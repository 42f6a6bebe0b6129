/**
 * What one delivery attempt came to, and how a DIMSE status maps onto it.
 */

export interface SendResult {
  readonly exportPk: string;
  readonly generation: number;
  /** delivered; failed: worth another attempt; refused: the destination will not take it as it is. */
  readonly outcome: 'delivered' | 'failed' | 'refused';
  /** For failures, or a warning the destination gave with a success. No patient data. */
  readonly detail?: string;
}

const hex = (status: number): string => `0x${status.toString(16).padStart(4, '0').toUpperCase()}`;

/**
 * C-STORE response status (PS3.4 Annex B.2.3, PS3.7 Annex C): success and warnings (coercion 0xB000,
 * elements discarded 0xB006, data set does not match SOP class 0xB007) are a delivery; Out of Resources
 * (0xA7xx) and unknown statuses are worth retrying; SOP class not supported (0x0122), data set does not
 * match SOP class (0xA9xx) and cannot understand (0xCxxx) are refusals: retrying the same bytes will not
 * help, so the delivery goes dead until an operator retries it.
 */
export function classifyStoreStatus(status: number, comment?: string): Pick<SendResult, 'outcome' | 'detail'> {
  const withComment = (s: string): string => (comment ? `${s}: ${comment}` : s);
  if (status === 0x0000) return { outcome: 'delivered' };
  if (status === 0xb000 || status === 0xb006 || status === 0xb007) return { outcome: 'delivered', detail: withComment(`warning ${hex(status)}`) };
  if (status === 0x0122 || (status & 0xff00) === 0xa900 || (status & 0xf000) === 0xc000)
    return { outcome: 'refused', detail: withComment(`refused with status ${hex(status)}`) };
  return { outcome: 'failed', detail: withComment(`failed with status ${hex(status)}`) };
}
