// Entry point of the web client (placeholder until the page lands).
document.title = 'Multi-Messenger';
