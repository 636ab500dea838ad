/**
 * Request and response messages around the operation payloads. The request header follows the KMIP 1.2
 * field order (PyKMIP refuses other orders) and never carries a Client Correlation Value; a Time Stamp
 * goes in only when the caller vouches for the clock; batches of more than one item carry Unique Batch
 * Item IDs so every answer can be matched to its request.
 */
import {
  ItemType,
  byteString,
  childrenOf,
  dateTime,
  enumeration,
  integer,
  structure,
  type TtlvItem,
} from './ttlv/types.js';
import { T } from './spec.js';
import { optional, protocolError, required, requiredStructure, type ProtocolVersion } from './fields.js';
import { decodeVersion, encodeVersion } from './operations.js';

export interface RequestItem {
  operation: number;
  payload: TtlvItem[];
}

export interface RequestOptions {
  version: ProtocolVersion;
  /** Include a Time Stamp (only when the local clock is known to be accurate). */
  timeStamp?: Date;
  maximumResponseSize?: number;
  /** Batch item IDs to use (one per item); required when more than one item. */
  batchIds?: Uint8Array[];
  /** Batch Error Continuation Option (BatchErrorContinuationOption.*); servers default to Stop. */
  batchErrorContinuation?: number;
}

export function buildRequest(items: RequestItem[], options: RequestOptions): TtlvItem {
  if (items.length === 0) throw new RangeError('a request needs at least one batch item');
  if (items.length > 1 && options.batchIds?.length !== items.length)
    throw new RangeError('a batch of more than one item needs one Unique Batch Item ID per item');
  // 1.2 order: Protocol Version, Maximum Response Size, Asynchronous Indicator, Authentication,
  // Batch Error Continuation Option, Batch Order Option, Time Stamp, Batch Count.
  const header: TtlvItem[] = [encodeVersion(options.version)];
  if (options.maximumResponseSize !== undefined)
    header.push(integer(T.MaximumResponseSize, options.maximumResponseSize));
  if (options.batchErrorContinuation !== undefined)
    header.push(enumeration(T.BatchErrorContinuationOption, options.batchErrorContinuation));
  if (options.timeStamp) header.push(dateTime(T.TimeStamp, options.timeStamp));
  header.push(integer(T.BatchCount, items.length));
  const batch = items.map((item, i) => {
    const children: TtlvItem[] = [enumeration(T.Operation, item.operation)];
    const id = options.batchIds?.[i];
    if (id) children.push(byteString(T.UniqueBatchItemID, id));
    children.push(structure(T.RequestPayload, item.payload));
    return structure(T.BatchItem, children);
  });
  return structure(T.RequestMessage, [structure(T.RequestHeader, header), ...batch]);
}

export interface ResponseItem {
  operation?: number;
  batchId?: Buffer;
  resultStatus: number;
  resultReason?: number;
  resultMessage?: string;
  payload?: TtlvItem;
}

export interface ResponseMessage {
  version: ProtocolVersion;
  timeStamp?: bigint;
  items: ResponseItem[];
}

export function parseResponse(message: TtlvItem): ResponseMessage {
  if (message.tag !== T.ResponseMessage || message.type !== ItemType.Structure)
    throw protocolError('the answer is not a Response Message', 'KMIP_PROTOCOL_UNEXPECTED_MESSAGE');
  const header = requiredStructure(message, T.ResponseHeader);
  const version = decodeVersion(requiredStructure(header, T.ProtocolVersion));
  const batchCount = required(header, T.BatchCount, ItemType.Integer);
  const batchItems = childrenOf(message, T.BatchItem);
  if (batchItems.length !== batchCount)
    throw protocolError(
      `Batch Count says ${batchCount} but the message holds ${batchItems.length} batch items`,
      'KMIP_PROTOCOL_BATCH_MISMATCH',
    );
  const items = batchItems.map((b): ResponseItem => {
    if (b.type !== ItemType.Structure) throw protocolError('Batch Item is not a structure');
    const item: ResponseItem = { resultStatus: required(b, T.ResultStatus, ItemType.Enumeration) };
    const operation = optional(b, T.Operation, ItemType.Enumeration);
    if (operation !== undefined) item.operation = operation;
    const id = optional(b, T.UniqueBatchItemID, ItemType.ByteString);
    if (id !== undefined) item.batchId = Buffer.from(id);
    const reason = optional(b, T.ResultReason, ItemType.Enumeration);
    if (reason !== undefined) item.resultReason = reason;
    const text = optional(b, T.ResultMessage, ItemType.TextString);
    if (text !== undefined) item.resultMessage = text;
    const payload = b.value.find((c) => c.tag === T.ResponsePayload);
    if (payload !== undefined) item.payload = payload;
    return item;
  });
  const result: ResponseMessage = { version, items };
  const timeStamp = optional(header, T.TimeStamp, ItemType.DateTime);
  if (timeStamp !== undefined) result.timeStamp = timeStamp;
  return result;
}
