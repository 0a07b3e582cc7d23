import { useState } from 'react';
import Greeting from './Greeting.jsx';

export default function App() {
  const [count, setCount] = useState(0);
  return (
    <main style={{ font: '16px/1.6 system-ui, sans-serif', maxWidth: '40rem', margin: '2rem auto' }}>
      <Greeting />
      <p>
        Edit <code>src/Greeting.jsx</code>: Vite swaps it in place (React Fast Refresh) and the
        count stays.
      </p>
      <button type="button" onClick={() => setCount((c) => c + 1)}>
        Clicked {count} times
      </button>
    </main>
  );
}
