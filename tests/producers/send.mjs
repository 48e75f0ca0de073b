// A Node.js queue producer as @azure/storage-queue's documentation shows it: sendMessage with the
// SDK's defaults, which put the text on the queue as it is (no base64).
// Usage: node send.mjs <connection string> <queue name> <message text>
import { QueueServiceClient } from "@azure/storage-queue";

const [connectionString, queueName, text] = process.argv.slice(2);
const queue = QueueServiceClient.fromConnectionString(connectionString).getQueueClient(queueName);
await queue.createIfNotExists();
const sent = await queue.sendMessage(text);
console.log(sent.messageId);
