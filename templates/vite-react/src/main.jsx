import { StrictMode, useState } from 'react';
import { createRoot } from 'react-dom/client';

function App() {
  const [count, setCount] = useState(0);
  return (
    <main style={{ font: '16px/1.6 system-ui, sans-serif', maxWidth: '40rem', margin: '2rem auto' }}>
      <h1>Hello from React</h1>
      <p>Edit <code>src/main.jsx</code>; Vite reloads the page.</p>
      <button type="button" onClick={() => setCount((c) => c + 1)}>
        Clicked {count} times
      </button>
    </main>
  );
}

createRoot(document.getElementById('root')).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
